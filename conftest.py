"""Fixtures shared by the core's and the plugins' tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from kmsframe.testing.postgres import create_database, postgres_server

_db_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A real PostgreSQL server started for this test session."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return create_database(postgres_admin_url, f"kms_test_{next(_db_names)}")

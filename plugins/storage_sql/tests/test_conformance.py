from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kmsframe_storage_sql import SqlStorage

from kmsframe.testing.conformance import StorageConformance


class TestSqlite(StorageConformance):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[SqlStorage]:
        store = SqlStorage(f"sqlite:///{tmp_path / 'kms.db'}")
        store.open()
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgres(StorageConformance):
    @pytest.fixture
    def storage(self, postgres_url: str) -> Iterator[SqlStorage]:
        store = SqlStorage(postgres_url)
        store.open()
        yield store
        store.close()

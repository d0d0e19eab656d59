"""Fixtures: real SoftHSM2 tokens made by the tests. Nothing is skipped: if
SoftHSM2 or OpenSC is missing, every test here fails saying what to install."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kmsframe_hsm_pkcs11 import Pkcs11Hsm, build
from kmsframe_hsm_pkcs11.testing import Realm, missing_tools

_counter = itertools.count()


@pytest.fixture(scope="session")
def softhsm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    problem = missing_tools()
    if problem:
        pytest.fail(problem, pytrace=False)
    return tmp_path_factory.mktemp("softhsm")


@pytest.fixture(scope="session")
def shared_realm(softhsm_root: Path) -> Realm:
    """Tokens shared by the read-mostly tests (each test uses its own key label)."""
    return Realm(softhsm_root / "shared", ["kms-a", "kms-b"])


@pytest.fixture
def make_realm(softhsm_root: Path) -> Callable[..., Realm]:
    """A fresh realm (own module copy) for tests that break or fill tokens."""
    def make(*labels: str, extra_conf: str = "") -> Realm:
        return Realm(softhsm_root / f"realm-{next(_counter)}", list(labels),
                     extra_conf=extra_conf)
    return make


@pytest.fixture
def key_label() -> str:
    return f"mk-test-{next(_counter)}"


@pytest.fixture
def hsm(shared_realm: Realm, key_label: str) -> Iterator[Pkcs11Hsm]:
    """An opened, initialised single-token pkcs11 backend (AES-GCM)."""
    backend = build(shared_realm.settings("kms-a", key_label=key_label))
    backend.open()
    backend.initialize()
    yield backend
    backend.close()


@pytest.fixture
def kwp_hsm(shared_realm: Realm, key_label: str) -> Iterator[Pkcs11Hsm]:
    """The same with CKM_AES_KEY_WRAP_PAD."""
    backend = build(shared_realm.settings("kms-a", key_label=key_label,
                                          mechanism="aes-key-wrap-pad"))
    backend.open()
    backend.initialize()
    yield backend
    backend.close()

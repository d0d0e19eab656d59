from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kmsframe_hsm_soft import SoftHsm

from kmsframe.secrets import Secret
from kmsframe.testing.conformance import HsmConformance


class TestSoftHsmWithPassphrase(HsmConformance):
    @pytest.fixture
    def hsm(self, tmp_path: Path) -> Iterator[SoftHsm]:
        backend = SoftHsm(tmp_path / "ks.json", unseal_secret=Secret(b"correct horse"), scrypt_n=2**10)
        backend.initialize()
        yield backend
        backend.close()


class TestSoftHsmWithShares(HsmConformance):
    @pytest.fixture
    def hsm(self, tmp_path: Path) -> Iterator[SoftHsm]:
        backend = SoftHsm(tmp_path / "ks.json")
        shown = backend.initialize({"shares": 5, "threshold": 3})
        assert len(shown["shares"]) == 5
        yield backend
        backend.close()

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kmsframe.deployment import Deployment
from kmsframe.service import KeyService
from kmsframe.testing import embedded_deployment


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with embedded_deployment(tmp_path / "kms") as d:
        yield d


@pytest.fixture
def service(deployment: Deployment) -> KeyService:
    return deployment.service


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(service: KeyService) -> FakeClock:
    fake = FakeClock()
    service.clock = fake
    return fake

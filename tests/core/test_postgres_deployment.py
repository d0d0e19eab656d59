"""The whole key service on a real PostgreSQL server (started by the tests)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kmsframe.testing import embedded_deployment

pytestmark = pytest.mark.postgres


def test_service_on_postgres_survives_a_restart(tmp_path: Path, postgres_url: str) -> None:
    with embedded_deployment(tmp_path, storage_url=postgres_url) as d:
        d.service.create_key("k")
        text = d.service.encrypt("k", b"on postgres", {"t": "1"}).ciphertext
        d.service.rotate("k")
    with embedded_deployment(tmp_path, storage_url=postgres_url) as d:
        assert d.service.get_key("k").primary_version == 10002
        assert d.service.decrypt("k", text, {"t": "1"}) == b"on postgres"


def test_two_nodes_rotating_at_once_lose_no_version(tmp_path: Path, postgres_url: str) -> None:
    """Two deployments (as two nodes) share one database and rotate concurrently."""
    with embedded_deployment(tmp_path, storage_url=postgres_url) as a, \
            embedded_deployment(tmp_path, storage_url=postgres_url) as b:
        a.service.create_key("k")
        errors: list[BaseException] = []

        def rotate(service, times: int) -> None:
            try:
                for _ in range(times):
                    service.rotate("k")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=rotate, args=(s, 8)) for s in (a.service, b.service)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        key = a.service.get_key("k")
        assert [v.number for v in key.versions] == list(range(10001, 10018))
        assert key.primary_version == 10017
        assert sum(v.state.value == "active" for v in key.versions) == 1

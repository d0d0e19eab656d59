"""Two nodes — two ``kmsframe serve`` processes with their own data directories,
one PostgreSQL store and one master key — see each other's changes within the
documented bound (``store_poll_seconds`` + one store read; kmsframe.node_sync).

The control case turns polling off on the second node: its cached key then keeps
serving after the first node disabled it, so the bound really comes from polling.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from .config_server import init, serve, soft_config, stop

pytestmark = pytest.mark.postgres

ROOT = "kmsf_root_two-nodes-" + "n" * 30
PLUGINS = ["hsm_soft", "algo_aes", "storage_sql"]
POLL = 0.2


@pytest.mark.parametrize("poll", [POLL, 0], ids=["polling", "not-polling"])
def test_a_disable_on_one_node_is_refused_on_the_other_within_the_bound(
        tmp_path: Path, postgres_url: str, poll: float) -> None:
    shared = tmp_path / "shared"  # one master key: the soft HSM's sealed keystore
    shared.mkdir()
    a, b = (soft_config(tmp_path / node, PLUGINS, storage_url=postgres_url, hsm_dir=shared,
                        extra=f"\n[keys]\nstore_poll_seconds = {seconds}\n")
            for node, seconds in (("a", POLL), ("b", poll)))
    init(a)
    # The control needs every worker of B warm, which one worker makes certain.
    (proc_a, url_a) = serve(a, ROOT)
    (proc_b, url_b) = serve(b, ROOT, workers=2 if poll else 1)
    root = {"Authorization": f"Bearer {ROOT}"}
    try:
        with httpx.Client(base_url=url_a, headers=root, timeout=30) as node_a:
            assert node_a.post("/v1/keys", json={"name": "cards"}).status_code == 201
            app = node_a.post("/v1/apps", json={"name": "shop"}).json()
            r = node_a.put(f"/v1/keys/cards/apps/{app['id']}", json={"operations": ["encrypt"]})
            assert r.status_code == 200
            as_app = {"Authorization": f"Bearer {app['token']}"}
            with httpx.Client(base_url=url_b, headers=as_app, timeout=30) as node_b:
                # Warm the workers' caches on node B (several connections).
                for _ in range(8):
                    with httpx.Client(base_url=url_b, headers=as_app, timeout=30) as fresh:
                        assert fresh.post("/v1/keys/cards/encrypt",
                                          json={"plaintext": ""}).status_code == 200
                assert node_a.post("/v1/keys/cards/disable").status_code == 200
                changed = time.monotonic()
                refused_after = None
                while time.monotonic() - changed < 3.0:
                    r = node_b.post("/v1/keys/cards/encrypt", json={"plaintext": ""})
                    if r.status_code == 409:
                        assert r.json()["error"]["code"] == "key_disabled"
                        refused_after = time.monotonic() - changed
                        break
                    assert r.status_code == 200, r.text
                    time.sleep(0.02)
        print(f"node B refused after {refused_after} s (poll {poll} s)")
        if poll:
            # The bound: one poll interval plus a store read (margin for a busy machine).
            assert refused_after is not None and refused_after < POLL + 1.0, refused_after
        else:
            assert refused_after is None  # the cached key serves on: polling is the bound
    finally:
        stop(proc_a, a)
        stop(proc_b, b)

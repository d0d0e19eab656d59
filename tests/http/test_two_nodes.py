"""Two nodes — two ``kmsframe serve`` processes with their own data directories,
one PostgreSQL store and one master key — see each other's changes within the
documented bound (``store_poll_seconds`` + one store read; kmsframe.node_sync).

The control case turns polling off on the second node: its cached key then keeps
serving after the first node disabled it, so the bound really comes from polling.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port

pytestmark = pytest.mark.postgres

ROOT = "kmsf_root_two-nodes-" + "n" * 30
POLL = 0.2


def _config(data: Path, shared: Path, url: str, poll: float) -> Path:
    data.mkdir(parents=True)
    config = data / "kms.toml"
    config.write_text(f"""
[deployment]
data_dir = "{data}"
plugins = ["hsm_soft", "algo_aes", "storage_sql"]

[hsm]
backend = "soft"
keystore = "{shared / 'keystore.json'}"
unseal_secret = "$file:{shared / 'unseal.secret'}"
scrypt_n = 1024

[storage]
backend = "sql"
url = "{url}"

[keys]
store_poll_seconds = {poll}
""")
    return config


def _serve(config: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(config.parent / "server.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmsframe.cli", "--config", str(config), "serve",
         "--port", str(port), "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "KMSFRAME_ROOT_TOKEN": ROOT, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (config.parent / "server.log").read_text()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                time.sleep(0.3 * workers)  # every worker up
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, (config.parent / "server.log").read_text()
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("poll", [POLL, 0], ids=["polling", "not-polling"])
def test_a_disable_on_one_node_is_refused_on_the_other_within_the_bound(
        tmp_path: Path, postgres_url: str, poll: float) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "unseal.secret").write_text(base64.urlsafe_b64encode(os.urandom(24)).decode())
    a = _config(tmp_path / "a", shared, postgres_url, POLL)
    b = _config(tmp_path / "b", shared, postgres_url, poll)
    done = subprocess.run([sys.executable, "-m", "kmsframe.cli", "--config", str(a), "init"],
                          capture_output=True)
    assert done.returncode == 0, done.stderr
    # The control needs every worker of B warm, which one worker makes certain.
    (proc_a, url_a), (proc_b, url_b) = _serve(a, 1), _serve(b, 2 if poll else 1)
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
        _stop(proc_a)
        _stop(proc_b)

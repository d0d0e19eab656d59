"""End to end through the HTTP service (real uvicorn on loopback): two SoftHSM2
tokens behind one deployment; one is destroyed under traffic, then the other.
/readyz shows each token's state; requests keep working while one is left."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from kmsframe_hsm_pkcs11.testing import deployment_toml

from kmsframe.cli import main

ROOT_TOKEN = "readyz-root-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(make_realm, key_label, tmp_path: Path) -> Iterator[tuple[str, list, Path]]:
    a, b = make_realm("kms-a"), make_realm("kms-b")
    toml = deployment_toml(tmp_path / "d", [(a, "kms-a"), (b, "kms-b")], key_label,
                           keys="cache_ttl_seconds = 0.0001")
    result = CliRunner().invoke(main, ["--config", str(toml), "init", "--shares", "2",
                                       "--threshold", "2"])
    assert result.exit_code == 0, result.output
    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kmsframe.cli", "--config", str(toml), "serve",
             "--port", str(port), "--workers", "1"],
            env={**os.environ, "KMSFRAME_ROOT_TOKEN": ROOT_TOKEN}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url, [(a, "kms-a"), (b, "kms-b")], log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_readyz_shows_each_token_and_traffic_survives_one(served) -> None:
    url, tokens, log = served
    root = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ROOT_TOKEN}"},
                        timeout=30)
    assert root.post("/v1/keys", json={"name": "pay"}).status_code == 201
    shop = root.post("/v1/apps", json={"name": "shop"}).json()
    app_token = shop["token"]
    # Only apps bound to a key may use it.
    root.put(f"/v1/keys/pay/apps/{shop['id']}", json={"operations": ["encrypt", "decrypt"]})
    app = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {app_token}"},
                       timeout=30)
    plaintext = base64.b64encode(b"4111 1111 1111 1111").decode()

    def round_trip() -> None:
        ciphertext = app.post("/v1/keys/pay/encrypt", json={"plaintext": plaintext})
        assert ciphertext.status_code == 200, ciphertext.text
        opened = app.post("/v1/keys/pay/decrypt",
                          json={"ciphertext": ciphertext.json()["ciphertext"]})
        assert opened.status_code == 200 and opened.json()["plaintext"] == plaintext

    ready = root.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["checks"] == {"storage": "ok", "hsm": "ok"}
    assert [(t["label"], t["up"]) for t in body["hsm_tokens"]] == [("kms-a", True), ("kms-b", True)]
    assert all(t["hardware"] is False and t["current_master_key"] for t in body["hsm_tokens"])
    round_trip()

    (realm_a, label_a), (realm_b, label_b) = tokens
    shutil.rmtree(realm_a.token_dir(label_a))  # the preferred token is destroyed
    for _ in range(20):
        round_trip()  # every request unwraps in the HSM (tiny cache TTL): on kms-b now
    body = root.get("/readyz").json()
    by_label = {t["label"]: t for t in body["hsm_tokens"]}
    assert body["status"] == "ready"
    assert by_label["kms-a"]["up"] is False and by_label["kms-a"]["error"]
    assert by_label["kms-b"]["up"] is True

    shutil.rmtree(realm_b.token_dir(label_b))  # and now the last one
    gone = root.get("/readyz")
    assert gone.status_code == 503
    assert gone.json()["checks"]["hsm"] == "unavailable"
    assert not any(t["up"] for t in gone.json()["hsm_tokens"])
    refused = app.post("/v1/keys/pay/encrypt", json={"plaintext": plaintext})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
    assert "4711-user-pin" not in log.read_text()

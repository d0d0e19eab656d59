"""``kmsframe serve`` as a process: workers, restarts, SIGTERM, TLS, leaks."""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from kmsframe import ciphertext as ct
from kmsframe.config import embedded_config
from kmsframe.deployment import Deployment

from .conftest import ROOT_TOKEN, KmsServer, error_code
from .tls import make_pki


def _fresh(server: KmsServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request on a new connection, so the kernel may hand it to any worker."""
    with server.client() as c:
        return c.request(method, path, **kwargs)  # type: ignore[arg-type]


def _encrypts_per_worker(server: KmsServer) -> dict[str, int]:
    """Successful encrypts each worker has served, from the workers' metric
    snapshots (published every second, kmsframe.http.metrics)."""
    time.sleep(1.5)
    out = {}
    for path in (server.data_dir / "metrics").glob("*.json"):
        snap = json.loads(path.read_text())
        out[path.stem] = sum(n for r, m, s, n in snap["requests"]
                             if r == "/v1/keys/{name}/encrypt" and s == 200)
    return out


def _requests_per_worker(server: KmsServer, route: str) -> dict[str, int]:
    """Requests on ``route`` each worker has answered, whatever their status."""
    time.sleep(1.5)
    return {path.stem: sum(n for r, m, s, n in json.loads(path.read_text())["requests"]
                           if r == route)
            for path in (server.data_dir / "metrics").glob("*.json")}


def key_materials(data_dir: Path) -> list[bytes]:
    """Every working-key version's raw material (for leak checks only)."""
    found = []
    with Deployment.open(embedded_config(data_dir), shared_signal=False) as d:
        for key in d.service.list_keys():
            for v in key.versions:
                if v.wrapped is not None:
                    aad = ct.wrap_aad(key.id, v.number, key.algorithm, key.purpose.value)
                    found.append(d.hsm.unwrap(v.wrapped, aad).reveal())
    return found


def assert_no_leaks(server: KmsServer, log_secrets: list[str]) -> None:
    """No stack trace in the log; no working key in the log or any response;
    ``log_secrets`` (tokens, plaintexts: legitimately in some responses) not
    in the log."""
    log = server.log()
    assert "Traceback" not in log and 'File "' not in log
    responses = [b.decode("utf-8", "replace") for b in server.seen]
    materials = key_materials(server.data_dir)
    assert materials
    for material in materials:
        for needle in (material.hex(), base64.b64encode(material).decode(),
                       base64.urlsafe_b64encode(material).decode().rstrip("=")):
            assert needle not in log
            assert not any(needle in r for r in responses)
    for needle in log_secrets:
        assert needle not in log
    assert not any(ROOT_TOKEN in r for r in responses)


@pytest.fixture()
def two_workers(tmp_path: Path):
    srv = KmsServer(tmp_path / "data", workers=2).start()
    yield srv
    if srv.proc is not None:
        srv.stop()


def test_rotation_is_seen_by_every_worker(two_workers: KmsServer) -> None:
    srv = two_workers
    assert _fresh(srv, "POST", "/v1/keys", json={"name": "shared"}).status_code == 201
    for _ in range(60):  # warm both workers' caches with version 10001
        r = _fresh(srv, "POST", "/v1/keys/shared/encrypt", json={"plaintext": ""})
        assert r.json()["version"] == 10001
    before = _encrypts_per_worker(srv)
    assert len(before) == 2 and all(before.values()), before
    with srv.client() as c:
        for _ in range(20):
            assert c.post("/v1/keys/shared/encrypt", json={"plaintext": ""}).json()["version"] \
                == 10001
    assert _fresh(srv, "POST", "/v1/keys/shared/rotate").json()["primary_version"] == 10002
    for _ in range(100):
        r = _fresh(srv, "POST", "/v1/keys/shared/encrypt", json={"plaintext": ""})
        assert r.status_code == 200 and r.json()["version"] == 10002
    after = _encrypts_per_worker(srv)
    assert after.keys() == before.keys()
    assert all(after[w] > before[w] for w in after), (before, after)  # both saw 10002
    # And /metrics, whichever worker answers, counts every worker's requests.
    total = sum(after.values())
    for _ in range(4):
        text = _fresh(srv, "GET", "/metrics").text
        assert "kmsframe_http_workers 2" in text
        assert (f'kmsframe_http_requests_total{{route="/v1/keys/{{name}}/encrypt",'
                f'method="POST",status="200"}} {total}') in text


def test_revoked_app_is_refused_by_every_worker(two_workers: KmsServer) -> None:
    srv = two_workers
    _fresh(srv, "POST", "/v1/keys", json={"name": "k"})
    app = _fresh(srv, "POST", "/v1/apps", json={"name": "a"}).json()
    _fresh(srv, "PUT", f"/v1/keys/k/apps/{app['id']}", json={"operations": ["encrypt"]})
    for _ in range(30):  # every worker caches the token as valid
        assert _fresh(srv, "POST", "/v1/keys/k/encrypt", json={"plaintext": ""},
                      headers={"Authorization": f"Bearer {app['token']}"}).status_code == 200
    _fresh(srv, "POST", f"/v1/apps/{app['id']}/revoke")
    for _ in range(30):
        assert _fresh(srv, "POST", "/v1/keys/k/encrypt", json={"plaintext": ""},
                      headers={"Authorization": f"Bearer {app['token']}"}).status_code == 401


def test_rate_limit_is_shared_by_every_worker(two_workers: KmsServer) -> None:
    """burst 10 over two workers admits 10 requests, not 20: the workers share
    one bucket (kmsframe.access.ratelimit); every refusal is 429 and audited."""
    srv = two_workers
    _fresh(srv, "POST", "/v1/keys", json={"name": "limited"})
    app = _fresh(srv, "POST", "/v1/apps", json={"name": "busy"}).json()
    _fresh(srv, "PUT", f"/v1/keys/limited/apps/{app['id']}", json={"operations": ["encrypt"]})
    r = _fresh(srv, "PUT", "/v1/keys/limited/conditions",
               json={"conditions": {"rate_limit": {"per_second": 0.01, "burst": 10}}})
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {app['token']}"}
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:  # 80 requests on 80 connections, 8 at a time
        answers = list(pool.map(lambda _: _fresh(srv, "POST", "/v1/keys/limited/encrypt",
                                                 json={"plaintext": ""}, headers=auth),
                                range(80)))
    elapsed = time.monotonic() - started
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) <= 10 + 0.01 * elapsed and statuses.count(200) >= 10, statuses
    assert statuses.count(429) == 80 - statuses.count(200), statuses
    assert {error_code(a) for a in answers if a.status_code == 429} == {"rate_limited"}
    # Both workers served more than the burst: unshared buckets would have let 20 through.
    served = _requests_per_worker(srv, "/v1/keys/{name}/encrypt")
    assert len(served) == 2 and all(n > 10 for n in served.values()), served
    records = _fresh(srv, "GET", "/v1/audit", params={
        "key": "limited", "outcome": "rate_limited", "limit": 500}).json()["records"]
    assert len(records) == statuses.count(429)
    assert {(r["action"], r["actor"]) for r in records} == {("encrypt", f"app:{app['id']}")}


def test_sigterm_and_restart_keep_state(tmp_path: Path) -> None:
    srv = KmsServer(tmp_path / "data", workers=2).start()
    with srv.client() as c:
        c.post("/v1/keys", json={"name": "durable"})
        c.post("/v1/keys/durable/rotate")
        sealed = c.post("/v1/keys/durable/encrypt",
                        json={"plaintext": base64.b64encode(b"keep me").decode()}).json()
        app = c.post("/v1/apps", json={"name": "survivor"}).json()
        c.put(f"/v1/keys/durable/apps/{app['id']}", json={"operations": ["decrypt"]})
    assert srv.stop() == 0
    log = srv.log()
    assert log.count("Application shutdown complete") == 2, log
    srv.start()
    with srv.client(token=app["token"]) as c:
        r = c.post("/v1/keys/durable/decrypt", json={"ciphertext": sealed["ciphertext"]})
        assert base64.b64decode(r.json()["plaintext"]) == b"keep me"
    with srv.client() as c:
        assert c.get("/v1/keys/durable").json()["primary_version"] == 10002
    assert srv.stop() == 0
    assert_no_leaks(srv, [ROOT_TOKEN, app["token"], base64.b64encode(b"keep me").decode()])


def test_logs_and_responses_hold_no_secrets(server: KmsServer, client: httpx.Client) -> None:
    """After a varied workload (including errors), the shared server's log and
    every response the tests saw hold no key material and no stack trace."""
    client.post("/v1/keys", json={"name": "leak-check"})
    client.post("/v1/keys/leak-check/encrypt", json={"plaintext": "bm90IGJhc2U2NA=="})
    client.post("/v1/keys/leak-check/decrypt", json={"ciphertext": "10001AAAAAAAAAAAAAAAAAAAAAAA"})
    client.post("/v1/keys/leak-check/encrypt", content=b"{")
    client.post("/v1/keys/leak-check/datakey", json={"include_plaintext": False})
    client.post("/v1/keys/leak-check/rotate")
    assert_no_leaks(server, [ROOT_TOKEN])


def test_dev_prints_an_admin_token_when_none_is_given(tmp_path: Path) -> None:
    srv = KmsServer(tmp_path / "data", root_token=None).start()
    try:
        found = re.search(r"admin token \(set KMSFRAME_ROOT_TOKEN to fix it\): (\S+)", srv.log())
        assert found, srv.log()
        assert "DEVELOPMENT MODE" in srv.log()
        assert (tmp_path / "data" / "unseal.secret").exists()
        with srv.client(token=found[1]) as c:
            assert c.post("/v1/keys", json={"name": "dev"}).status_code == 201
        with srv.client(token=ROOT_TOKEN) as c:  # no fixed token this time
            assert c.get("/v1/keys").status_code == 401
    finally:
        srv.stop()


def test_refuses_public_address_without_tls(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "kmsframe.cli", "--data-dir", str(tmp_path),
                        "serve", "--host", "0.0.0.0", "--port", "1"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0
    assert "refusing to listen on 0.0.0.0 without TLS" in r.stderr
    assert not (tmp_path / "kms.db").exists()


def _der_sha256(pem_path: Path) -> str:
    import hashlib

    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem_path.read_text())).hexdigest()


def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    srv = KmsServer(tmp_path / "data", scheme="https", extra=(
        "--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]),
        "--tls-client-ca", str(pki["ca"])))
    client_ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    client_ctx.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    srv.start(verify=client_ctx)
    try:
        with srv.client(verify=client_ctx) as c:
            assert c.post("/v1/keys", json={"name": "tls"}).status_code == 201
            assert c.post("/v1/keys/tls/encrypt", json={"plaintext": ""}).status_code == 200
        # Without a token, the certificate alone identifies an app once one is
        # registered with its fingerprint.
        with srv.client(token=None, verify=client_ctx) as anon:
            r = anon.post("/v1/keys/tls/encrypt", json={"plaintext": ""})
            assert r.status_code == 401
            fingerprint = _der_sha256(pki["client_cert"])
            with srv.client(verify=client_ctx) as c:
                app = c.post("/v1/apps", json={"name": "cert-app",
                                               "client_cert_sha256": fingerprint.upper()}).json()
            assert app["client_cert_sha256"] == fingerprint
            with srv.client(verify=client_ctx) as c:  # only bound apps use a key
                c.put(f"/v1/keys/tls/apps/{app['id']}", json={"operations": ["encrypt"]})
            r = anon.post("/v1/keys/tls/encrypt", json={"plaintext": ""})
            assert r.status_code == 200 and r.json()["version"] == 10001
            assert anon.post("/v1/keys", json={"name": "nope"}).status_code == 403
            with srv.client(verify=client_ctx) as c:
                c.post(f"/v1/apps/{app['id']}/revoke")
            assert anon.post("/v1/keys/tls/encrypt", json={"plaintext": ""}).status_code == 401
        no_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises(httpx.HTTPError), srv.client(verify=no_cert) as c:
            c.get("/readyz")
        with pytest.raises(httpx.HTTPError):  # and plain HTTP is not served at all
            httpx.get(srv.url.replace("https", "http") + "/healthz", timeout=5)
    finally:
        assert srv.stop() == 0


def test_serve_from_a_config_file(tmp_path: Path) -> None:
    """Not --dev: a deployment TOML, its secrets from the environment, the
    admin token from ``[http] root_token``."""
    import os
    import signal

    from .conftest import free_port

    data = tmp_path / "data"
    (tmp_path / "kms.toml").write_text(
        f'[deployment]\ndata_dir = "{data}"\nplugins = ["hsm_soft", "algo_aes", "storage_sql"]\n'
        f'[hsm]\nbackend = "soft"\nkeystore = "{data}/keystore.json"\n'
        'unseal_secret = "$env:TEST_UNSEAL"\nscrypt_n = 1024\n'
        f'[storage]\nbackend = "sql"\nurl = "sqlite:///{data}/kms.db"\n'
        '[http]\nroot_token = "$env:TEST_ROOT"\nmax_body_bytes = 2048\n')
    env = {**os.environ, "TEST_UNSEAL": "u" * 32, "TEST_ROOT": "config-root-token"}
    env.pop("KMSFRAME_ROOT_TOKEN", None)
    cli = [sys.executable, "-m", "kmsframe.cli", "--config", str(tmp_path / "kms.toml")]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True, timeout=60,
                   cwd=tmp_path)
    port = free_port()
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers", "1",
                                 "--log-level", "info"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = {"Authorization": "Bearer config-root-token"}
        assert httpx.post(url + "/v1/keys", json={"name": "c"}, headers=auth).status_code == 201
        app = httpx.post(url + "/v1/apps", json={"name": "c-app"}, headers=auth).json()
        httpx.put(url + f"/v1/keys/c/apps/{app['id']}", json={"operations": ["encrypt"]},
                  headers=auth)
        r = httpx.post(url + "/v1/keys/c/encrypt", headers={"Authorization": f"Bearer {app['token']}"},
                       json={"plaintext": base64.b64encode(b"x" * 2000).decode()})
        assert r.status_code == 413  # [http] max_body_bytes
        assert httpx.get(url + "/v1/keys", headers={
            "Authorization": f"Bearer {ROOT_TOKEN}"}).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log_text = (tmp_path / "log").read_text()
    assert "no admin token" not in log_text and "DEVELOPMENT MODE" not in log_text
    assert "config-root-token" not in log_text and "Application shutdown complete" in log_text

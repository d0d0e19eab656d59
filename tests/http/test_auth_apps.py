"""Bearer tokens, apps and permissions through the real server."""

from __future__ import annotations

import base64

import httpx

from .conftest import KmsServer, error_code


def test_healthz_needs_no_token(server: KmsServer) -> None:
    with server.client(token=None) as c:
        r = c.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_everything_else_needs_a_token(server: KmsServer, client: httpx.Client) -> None:
    doc = client.get("/v1/openapi.json").json()
    with server.client(token=None) as anon:
        for path, ops in doc["paths"].items():
            for method in ops:
                if path == "/healthz":
                    continue
                concrete = path.replace("{name}", "k").replace("{version}", "10001") \
                    .replace("{app_id}", "a")
                r = anon.request(method.upper(), concrete, json={})
                assert r.status_code == 401, (method, path)
                assert error_code(r) == "unauthenticated"
                assert r.headers["www-authenticate"] == "Bearer"


def test_bad_tokens_are_401(server: KmsServer) -> None:
    for header in ("Bearer nope", "Basic dXNlcjpwYXNz", "Bearer", "Token abc",
                   "Bearer kmsf_0123456789abcdef_" + "A" * 43, "Bearer \u00e9t\u00e9"):
        with httpx.Client(base_url=server.url) as c:
            r = c.get("/v1/keys", headers={"Authorization": header.encode("utf-8")})
        assert r.status_code == 401, header
        assert error_code(r) == "unauthenticated"


def test_app_token_shown_once_and_scoped(server: KmsServer, client: httpx.Client,
                                         key: str) -> None:
    r = client.post("/v1/apps", json={"name": "payments-api"})
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["token"]
    assert token.startswith("kmsf_" + created["id"] + "_")
    assert created["roles"] == ["app"] and created["created_by"] == "user:root"
    # Never shown again.
    shown = client.get(f"/v1/apps/{created['id']}").json()
    assert "token" not in shown and token not in str(shown)
    listed = client.get("/v1/apps").json()["apps"]
    assert created["id"] in [a["id"] for a in listed] and token not in str(listed)
    with server.client(token=token) as app:
        ct = app.post(f"/v1/keys/{key}/encrypt", json={"plaintext": base64.b64encode(b"hi").decode()})
        assert ct.status_code == 200
        r = app.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct.json()["ciphertext"]})
        assert base64.b64decode(r.json()["plaintext"]) == b"hi"
        for method, path in [("POST", "/v1/keys"), ("GET", "/v1/keys"),
                             ("POST", f"/v1/keys/{key}/rotate"), ("POST", "/v1/apps"),
                             ("GET", "/metrics")]:
            r = app.request(method, path, json={"name": "x"})
            assert r.status_code == 403, path
            assert error_code(r) == "permission_denied"
        assert app.get("/readyz").status_code == 200


def test_revoked_token_stops_working(server: KmsServer, client: httpx.Client, key: str) -> None:
    created = client.post("/v1/apps", json={"name": "short-lived"}).json()
    with server.client(token=created["token"]) as app:
        assert app.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 200
        r = client.post(f"/v1/apps/{created['id']}/revoke")
        assert r.status_code == 200 and r.json()["status"] == "revoked"
        r = app.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""})
        assert r.status_code == 401


def test_app_errors(client: httpx.Client) -> None:
    r = client.post("/v1/apps", json={"name": "dup-app"})
    assert r.status_code == 201
    r = client.post("/v1/apps", json={"name": "dup-app"})
    assert r.status_code == 409 and error_code(r) == "already_exists"
    assert error_code(client.get("/v1/apps/0000000000000000")) == "app_not_found"
    assert client.post("/v1/apps/0000000000000000/revoke").status_code == 404
    for body in ({"name": 1}, {"name": "ok", "roles": "admin"}, {"name": "ok", "roles": []},
                 {"nom": "x"}):
        r = client.post("/v1/apps", json=body)
        assert r.status_code == 422 and error_code(r) == "validation_error", body
    r = client.post("/v1/apps", json={"name": "!bad"})
    assert r.status_code == 400


def test_an_auditor_app_reads_but_cannot_change(server: KmsServer, client: httpx.Client,
                                                 key: str) -> None:
    token = client.post("/v1/apps", json={"name": "auditor-1", "roles": ["auditor"]}).json()["token"]
    with server.client(token=token) as auditor:
        assert auditor.get(f"/v1/keys/{key}").status_code == 200
        assert auditor.get("/metrics").status_code == 200
        assert auditor.post(f"/v1/keys/{key}/rotate").status_code == 403
        assert auditor.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 403


def test_readyz_and_metrics(client: httpx.Client, key: str) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"storage": "ok", "hsm": "ok"}}
    client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""})
    client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": 1})
    client.post(f"/v1/keys/{key}/encrypt", json={"items": [{"plaintext": 1}]})
    text = client.get("/metrics").text
    assert 'route="/v1/keys/{name}/encrypt",method="POST",status="200"}' in text
    assert 'route="/v1/keys/{name}/encrypt",method="POST",status="422"}' in text
    assert "kmsframe_http_request_duration_seconds_bucket{" in text
    assert 'le="+Inf"' in text
    assert 'kmsframe_http_errors_total{' in text and 'code="validation_error"' in text
    hits = [line for line in text.splitlines() if line.startswith("kmsframe_key_cache_hits_total")]
    assert hits and int(hits[0].rsplit(" ", 1)[1]) > 0

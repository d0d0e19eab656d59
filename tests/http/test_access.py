"""Access control through the real server: every route's permission, logins,
bindings, dual control, export and the audit log."""

from __future__ import annotations

import base64
import re
import time

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kmsframe.access.roles import PERMISSIONS
from kmsframe.export import open_export
from kmsframe.http import build_app
from kmsframe.http.access import PUBLIC_PATHS

from .conftest import KmsServer, error_code
from .people import PASSWORD


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- every route declares its permission ------------------------------------------------

def test_every_route_declares_a_known_permission() -> None:
    app = build_app(lambda: None)  # type: ignore[arg-type, return-value]
    routes = app.starlette.routes
    assert len(routes) > 40
    for route in routes:
        if route.path in PUBLIC_PATHS:
            assert route.permission is None, route.path
            continue
        assert route.permission, f"{route.method} {route.path} declares no permission"
        assert route.permission in PERMISSIONS, \
            f"{route.method} {route.path}: {route.permission!r} is not in the role table"


def test_public_routes_are_only_health_and_login() -> None:
    app = build_app(lambda: None)  # type: ignore[arg-type, return-value]
    assert {r.path for r in app.starlette.routes if r.permission is None} == set(PUBLIC_PATHS)


# -- logins -----------------------------------------------------------------------------

def test_login_whoami_logout(server: KmsServer) -> None:
    people = server.people
    token = people.login("aud1")
    with server.client(token=token) as c:
        me = c.get("/v1/whoami").json()
        assert me == {"id": "aud1", "kind": "user", "roles": ["auditor"]}
        assert c.post("/v1/logout").status_code == 200
        assert c.get("/v1/whoami").status_code == 401
    people.tokens.pop("aud1")


@pytest.mark.parametrize("what", ["password", "totp", "user"])
def test_bad_logins_are_401_and_vague(server: KmsServer, what: str) -> None:
    server.people  # the staff exist
    body = {"user": "ka6" if what != "user" else "nobody", "password": PASSWORD,
            "totp": "123456"}
    if what == "password":
        body["password"] = "wrong password, long enough"
    if what == "totp":
        body["totp"] = "000000"
    r = httpx.post(f"{server.url}/v1/login", json=body, timeout=30)
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    assert r.json()["error"]["message"] == "wrong user name, password or code"


def test_humans_cannot_do_crypto_and_apps_cannot_administer(server: KmsServer,
                                                              client: httpx.Client,
                                                              key: str) -> None:
    with server.people.client("ka1") as admin:
        r = admin.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""})
        assert r.status_code == 403
        assert admin.get(f"/v1/keys/{key}").status_code == 200
        assert admin.get("/v1/audit").status_code == 403  # key admins do not read audit
    with server.people.client("aud1") as auditor:
        assert auditor.post(f"/v1/keys/{key}/rotate").status_code == 403
        assert auditor.get("/v1/audit", params={"key": key}).status_code == 200


# -- bindings -----------------------------------------------------------------------------

def test_bindings_over_http(server: KmsServer, client: httpx.Client, key: str) -> None:
    app = client.post("/v1/apps", json={"name": f"bound-{key[-20:]}"}).json()
    with server.client(token=app["token"]) as a:
        assert a.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 403
        with server.people.client("ka1") as admin:
            r = admin.put(f"/v1/keys/{key}/apps/{app['id']}", json={"operations": ["encrypt"]})
            assert r.status_code == 200 and r.json()["apps"][app["id"]] == ["encrypt"]
            assert admin.get(f"/v1/keys/{key}").json()["apps"][app["id"]] == ["encrypt"]
            ct = a.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"x")})
            assert ct.status_code == 200
            r = a.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct.json()["ciphertext"]})
            assert r.status_code == 403 and error_code(r) == "permission_denied"
            for bad in ({"operations": ["sign"]}, {"operations": []}, {"operations": ["x"]}):
                r = admin.put(f"/v1/keys/{key}/apps/{app['id']}", json=bad)
                assert r.status_code == 400, bad
            assert admin.put(f"/v1/keys/{key}/apps/{app['id']}",
                             json={"operations": "encrypt"}).status_code == 422
            assert admin.delete(f"/v1/keys/{key}/apps/{app['id']}").status_code == 200
            assert admin.delete(f"/v1/keys/{key}/apps/{app['id']}").status_code == 404
        assert a.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 403


def test_source_range_condition_over_http(server: KmsServer, client: httpx.Client,
                                          key: str) -> None:
    assert client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 200
    r = client.put(f"/v1/keys/{key}/conditions",
                   json={"conditions": {"source_ranges": ["10.0.0.0/8"]}})
    assert r.status_code == 200 and r.json()["conditions"]["source_ranges"] == ["10.0.0.0/8"]
    assert client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 403
    client.put(f"/v1/keys/{key}/conditions",
               json={"conditions": {"source_ranges": ["127.0.0.0/8"]}})
    assert client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 200
    r = client.put(f"/v1/keys/{key}/conditions", json={"conditions": {"source_ranges": []}})
    assert r.status_code == 400


# -- dual control ------------------------------------------------------------------------------

def test_master_key_ceremony_needs_three_security_admins_and_an_operator(
        server: KmsServer) -> None:
    people = server.people
    with people.client("sa1") as sa1:
        r = sa1.post("/v1/master-keys/generate", json={"reason": "annual ceremony"})
        assert r.status_code == 202, r.text
        pending = r.json()
        assert pending["requirements"] == {"operator": 1, "security_admin": 3}
        listed = sa1.get("/v1/approvals", params={"status": "pending"}).json()["approvals"]
        assert pending["id"] in [a["id"] for a in listed]
        # The requester cannot approve their own request.
        r = sa1.post(f"/v1/approvals/{pending['id']}/approve", json={"totp": people.code("sa1")})
        assert r.status_code == 403
    rid = pending["id"]
    assert people.approve("sa2", rid).json()["status"] == "pending"
    # Refused before any second factor is checked, so no code is spent:
    with people.client("sa2") as sa2:  # a user counts once
        r = sa2.post(f"/v1/approvals/{rid}/approve", json={"totp": "000000"})
        assert r.status_code == 409
    with people.client("ka5") as ka:  # wrong role
        r = ka.post(f"/v1/approvals/{rid}/approve", json={"totp": "000000"})
        assert r.status_code == 403
    with people.client("sa3") as sa3:  # a wrong second factor
        r = sa3.post(f"/v1/approvals/{rid}/approve", json={"totp": "000000"})
        assert r.status_code == 401
    assert people.approve("sa3", rid).json()["status"] == "pending"
    assert people.approve("op1", rid).json()["status"] == "pending"
    done = people.approve("sa4", rid).json()
    assert done["status"] == "executed" and done["result"]["master_key_id"].startswith("mk-")
    with people.client("sa5") as sa5:  # it ran once; it is over
        r = sa5.post(f"/v1/approvals/{rid}/approve", json={"totp": "000000"})
        assert r.status_code == 409


def test_share_ceremonies_are_checked_when_requested(server: KmsServer) -> None:
    with server.people.client("sa1") as sa1:
        before = len(sa1.get("/v1/approvals").json()["approvals"])
        for verb, body, status, says in [
            # The embedded software HSM has no custodian shares: refused up front.
            ("backup", {"shares": 3, "threshold": 2}, 400, "HSM backend 'soft' cannot back up"),
            ("restore", {"tokens": ["kms-b"]}, 400, "HSM backend 'soft' cannot restore"),
            ("rotate", {"custodians": {"shares": 3, "threshold": 2}}, 400,
             "cannot make a master key from shares"),
            ("backup", {"shares": 3, "threshold": 9}, 400, "2 <= threshold <= shares <= 255"),
            ("backup", {"reason": "no counts"}, 400, "params.shares"),
            ("restore", {"make_current": "yes"}, 400, "true or false"),
            ("generate", {"shares": 3}, 422, "shares"),
        ]:
            r = sa1.post(f"/v1/master-keys/{verb}", json=body)
            assert r.status_code == status and says in r.json()["error"]["message"], (verb, r.text)
        assert len(sa1.get("/v1/approvals").json()["approvals"]) == before
        r = sa1.post("/v1/master-keys/rotate", json={"custodians": None, "reason": "in token"})
        assert r.status_code == 202 and r.json()["params"] == {}


def test_rejection_over_http(server: KmsServer, client: httpx.Client, key: str) -> None:
    people = server.people
    r = client.post(f"/v1/keys/{key}/versions/10001/state", json={"state": "destroyed"})
    assert r.status_code == 202 and r.json()["operation"] == "versions.destroyed"
    rid = r.json()["id"]
    with people.client("sa6") as sa:
        r = sa.post(f"/v1/approvals/{rid}/reject", json={"totp": people.code("sa6"),
                                                         "reason": "no ticket"})
        assert r.status_code == 200 and r.json()["status"] == "rejected"
    with people.client("ka4") as ka:
        r = ka.post(f"/v1/approvals/{rid}/approve", json={"totp": "000000"})
        assert r.status_code == 409
    assert client.get(f"/v1/keys/{key}").json()["versions"][0]["state"] == "active"


def test_export_over_http_is_wrapped_for_the_recipient(server: KmsServer, client: httpx.Client,
                                                       key: str) -> None:
    people = server.people
    recipient = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = recipient.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ct = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"pan")}).json()
    with people.client("ka3") as ka:
        r = ka.post(f"/v1/keys/{key}/export", json={"recipient": "dr-site",
                                                     "public_key_pem": pem})
        assert r.status_code == 202, r.text
        assert ka.post(f"/v1/keys/{key}/export", json={
            "recipient": "x", "public_key_pem": "not a key"}).status_code == 400
    done = people.approve_all(r.json(), exclude="ka3")
    assert done["status"] == "executed"
    material = open_export(done["result"], recipient)
    assert len(material) == 32
    assert b64(material.reveal()) not in str(done)  # only the wrapped form travels
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kmsframe import ciphertext as fmt
    version, body = fmt.decode(ct["ciphertext"])
    key_id = done["result"]["key_id"]
    assert AESGCM(material.reveal()).decrypt(body[:12], body[12:],
                                             fmt.data_aad(key_id, version)) == b"pan"


def test_role_grant_over_http(server: KmsServer, client: httpx.Client) -> None:
    people = server.people
    name = f"new{int(time.time() * 1000) % 10**9}"
    r = client.post("/v1/users", json={"name": name})
    assert r.status_code == 201 and r.json()["roles"] == []
    created = r.json()
    with people.client("sys1") as sys1:
        r = sys1.post(f"/v1/users/{name}/roles", json={"role": "auditor"})
        assert r.status_code == 202
        assert sys1.get(f"/v1/users/{name}").json()["roles"] == []
    done = people.approve_all(r.json(), exclude="sys1")
    assert done["status"] == "executed"
    # The new user enrols the TOTP seed from the URI and logs in.
    seed = re.search(r"secret=([A-Z2-7]+)", created["totp_uri"])[1]
    r = httpx.post(f"{server.url}/v1/login", timeout=30, json={
        "user": name, "password": created["initial_password"], "totp": pyotp.TOTP(seed).now()})
    assert r.status_code == 201 and r.json()["roles"] == ["auditor"]
    # Disabling the user ends the session at once.
    token = r.json()["token"]
    assert client.post(f"/v1/users/{name}/disable").status_code == 200
    with server.client(token=token) as c:
        assert c.get("/v1/whoami").status_code == 401


# -- audit ------------------------------------------------------------------------------------

def test_audit_search_shows_crypto_denials_and_management(server: KmsServer,
                                                          client: httpx.Client,
                                                          key: str) -> None:
    client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"secret-payload")})
    outsider = client.post("/v1/apps", json={"name": f"out-{key[-20:]}"}).json()
    with server.client(token=outsider["token"]) as o:
        assert o.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).status_code == 403
    client.post(f"/v1/keys/{key}/rotate", json={"reason": "test"})
    with server.people.client("aud1") as auditor:
        records = auditor.get("/v1/audit", params={"key": key, "limit": 500}).json()["records"]
        outcomes = {(r["action"], r["outcome"], r["actor"].split(":")[0]) for r in records}
        assert ("encrypt", "ok", "app") in outcomes
        assert ("encrypt", "permission_denied", "app") in outcomes
        assert ("keys.rotate", "ok", "user") in outcomes  # the route's own record
        assert ("version.rotated", "ok", "user") in outcomes  # the key's change
        ok = next(r for r in records if r["action"] == "encrypt" and r["outcome"] == "ok")
        assert ok["source"] == "127.0.0.1" and ok["version"] == 10001
        denied = next(r for r in records if r["outcome"] == "permission_denied")
        assert denied["actor"] == f"app:{outsider['id']}"
        assert b64(b"secret-payload") not in str(records)
        by_app = auditor.get("/v1/audit", params={"app": outsider["id"]}).json()["records"]
        assert by_app and all(r["actor"] == f"app:{outsider['id']}" for r in by_app)
        verified = auditor.get("/v1/audit/verify").json()
        assert verified["ok"], verified
        assert auditor.get("/v1/audit", params={"limit": "x"}).status_code == 422
        assert auditor.get("/v1/audit", params={"bogus": "1"}).status_code == 422


def test_a_batch_is_one_audit_record_naming_each_item_outcome(server: KmsServer,
                                                              client: httpx.Client,
                                                              key: str) -> None:
    good = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"x")}).json()["ciphertext"]
    items = [{"ciphertext": good}, {"ciphertext": "10001!!"}, {"ciphertext": good},
             {"ciphertext": good[:-8] + "AAAAAAA="}]
    results = client.post(f"/v1/keys/{key}/decrypt", json={"items": items}).json()["results"]
    assert [("error" in r) for r in results] == [False, True, False, True]
    encrypted = client.post(f"/v1/keys/{key}/encrypt",
                            json={"items": [{"plaintext": b64(b"a")}] * 3}).json()["results"]
    assert all(r["version"] == 10001 for r in encrypted)
    with server.people.client("aud1") as auditor:
        records = auditor.get("/v1/audit", params={"key": key, "limit": 500}).json()["records"]
    batch = [r for r in records if r["action"] == "decrypt" and "batch of 4" in (r.get("detail") or "")]
    assert len(batch) == 1, records
    record = batch[0]
    assert record["outcome"] == "partial"
    assert record["detail"] == "batch of 4: ok 2; invalid_ciphertext at 1; decryption_failed at 3"
    (enc,) = [r for r in records if r["action"] == "encrypt" and "batch of 3" in (r.get("detail") or "")]
    assert enc["outcome"] == "ok" and enc["version"] == 10001
    assert enc["detail"] == "batch of 3: ok 3 (10001×3)"
    assert record["actor"].startswith("app:") and record["source"] == "127.0.0.1"
    assert "AAAAAAA" not in str(record) and good not in str(record)

"""Signature, MAC, public-key and asymmetric-encryption routes through a real server.

A real ``kmsframe serve`` (uvicorn, one worker) runs on loopback with a
deployment whose configuration loads every algorithm plugin, once with the
crypto fast path and once through the full starlette stack; the tests talk
to it with httpx and use the ``openssl`` command line on the other side of
every public-key operation (verifying kmsframe's signatures from the exported
PEM, encrypting to it for kmsframe to decrypt).
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .config_server import init, serve, soft_config, stop
from .conftest import b64, crypto_as_test_app, make_key

ROOT_TOKEN = "kmsf_root_signing-" + "s" * 40
PLUGINS = ["hsm_soft", "algo_aes", "storage_sql", "algo_sm4", "algo_sm2", "algo_rsa", "algo_ec",
           "algo_hmac"]



@pytest.fixture(scope="module", params=["fast-path", "full-stack"])
def base_url(tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[str]:
    """A real server, twice: with the crypto fast path and without it."""
    data = tmp_path_factory.mktemp("kms-signing")
    extra = ["--no-fast-path"] if request.param == "full-stack" else []
    config = soft_config(data, PLUGINS)
    init(config)
    proc, url = serve(config, ROOT_TOKEN, *extra)
    yield url
    stop(proc, config)


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    # Crypto calls go out as a test app bound to each key (the root token is no app).
    with httpx.Client(base_url=base_url, timeout=30,
                      headers={"Authorization": f"Bearer {ROOT_TOKEN}"},
                      event_hooks={"request": [crypto_as_test_app(base_url, ROOT_TOKEN)]}) as c:
        yield c


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True)


# -- sign / verify -------------------------------------------------------------


@pytest.mark.parametrize("algorithm,purpose", [
    ("ed25519", None), ("ecdsa-p256", None), ("sm2", "sign"), ("rsa-2048", "sign"),
    ("rsa-2048-pkcs1v15", None)])
def test_sign_then_verify(client: httpx.Client, algorithm: str, purpose: str | None) -> None:
    name = make_key(client, algorithm, purpose)
    r = client.post(f"/v1/keys/{name}/sign", json={"message": b64(b"transfer 100.00 CNY")})
    assert r.status_code == 200, r.text
    signed = r.json()
    assert set(signed) == {"signature", "version"} and signed["version"] == 10001
    assert signed["signature"].startswith("10001")
    r = client.post(f"/v1/keys/{name}/verify", json={"message": b64(b"transfer 100.00 CNY"),
                                                     "signature": signed["signature"]})
    assert r.status_code == 200 and r.json() == {"valid": True}
    r = client.post(f"/v1/keys/{name}/verify", json={"message": b64(b"transfer 900.00 CNY"),
                                                     "signature": signed["signature"]})
    assert r.status_code == 200 and r.json() == {"valid": False}


@pytest.mark.parametrize("distid", [None, "merchant-0042"])
def test_openssl_verifies_an_sm2_signature_from_the_public_key_route(
        client: httpx.Client, tmp_path: Path, distid: str | None) -> None:
    name = make_key(client, "sm2", "sign")
    message = "订单 0001 金额 100.00".encode()
    body = {"message": b64(message)}
    if distid:
        body["options"] = {"distinguishing_id": distid}
    signature = client.post(f"/v1/keys/{name}/sign", json=body).json()["signature"]
    r = client.get(f"/v1/keys/{name}/public-key")
    assert r.status_code == 200 and r.json()["version"] == 10001
    (tmp_path / "public.pem").write_text(r.json()["pem"])
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(base64.b64decode(signature[5:]))
    done = openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "public.pem"),
                   "-rawin", "-digest", "sm3", "-pkeyopt",
                   f"distid:{distid or '1234567812345678'}", "-in", str(tmp_path / "msg"),
                   "-sigfile", str(tmp_path / "sig"))
    assert done.returncode == 0 and b"Signature Verified Successfully" in done.stdout


def test_openssl_verifies_an_rsa_pss_signature_from_the_public_key_route(
        client: httpx.Client, tmp_path: Path) -> None:
    name = make_key(client, "rsa-3072", "sign")
    signature = client.post(f"/v1/keys/{name}/sign", json={"message": b64(b"batch")}).json()
    (tmp_path / "public.pem").write_text(client.get(f"/v1/keys/{name}/public-key").json()["pem"])
    (tmp_path / "msg").write_bytes(b"batch")
    (tmp_path / "sig").write_bytes(base64.b64decode(signature["signature"][5:]))
    done = openssl("dgst", "-sha256", "-verify", str(tmp_path / "public.pem"),
                   "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
                   "-signature", str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert done.returncode == 0 and b"Verified OK" in done.stdout


def test_sm2_distinguishing_id_must_match(client: httpx.Client) -> None:
    name = make_key(client, "sm2", "sign")
    signature = client.post(f"/v1/keys/{name}/sign", json={
        "message": b64(b"m"), "options": {"distinguishing_id": "alice"}}).json()["signature"]
    for options, valid in (({"distinguishing_id": "alice"}, True), (None, False),
                           ({"distinguishing_id": "bob"}, False)):
        body = {"message": b64(b"m"), "signature": signature}
        if options:
            body["options"] = options
        assert client.post(f"/v1/keys/{name}/verify", json=body).json() == {"valid": valid}


def test_rotation_old_signatures_still_verify_and_public_key_versions(client: httpx.Client) -> None:
    name = make_key(client, "ed25519")
    old = client.post(f"/v1/keys/{name}/sign", json={"message": b64(b"m")}).json()["signature"]
    first_pem = client.get(f"/v1/keys/{name}/public-key").json()["pem"]
    assert client.post(f"/v1/keys/{name}/rotate").status_code == 200
    new = client.post(f"/v1/keys/{name}/sign", json={"message": b64(b"m")}).json()
    assert new["version"] == 10002 and new["signature"].startswith("10002")
    assert client.post(f"/v1/keys/{name}/verify",
                       json={"message": b64(b"m"), "signature": old}).json() == {"valid": True}
    current = client.get(f"/v1/keys/{name}/public-key").json()
    assert current["version"] == 10002 and current["pem"] != first_pem
    assert client.get(f"/v1/keys/{name}/public-key",
                      params={"version": "10001"}).json() == {"version": 10001, "pem": first_pem}
    r = client.post(f"/v1/keys/{name}/versions/10001/state", json={"state": "retired"})
    assert r.status_code == 200, r.text
    assert client.post(f"/v1/keys/{name}/verify",
                       json={"message": b64(b"m"), "signature": old}).json() == {"valid": False}
    r = client.get(f"/v1/keys/{name}/public-key", params={"version": "10001"})
    assert r.status_code == 409 and error_code(r) == "version_not_usable"


@pytest.mark.parametrize("signature", ["", "10001", "garbage!", "99999AAAA", "10001" + "A" * 7])
def test_malformed_signatures_are_not_valid(client: httpx.Client, signature: str) -> None:
    name = make_key(client, "ecdsa-p256")
    r = client.post(f"/v1/keys/{name}/verify", json={"message": b64(b"m"), "signature": signature})
    assert r.status_code == 200 and r.json() == {"valid": False}


def test_sign_and_verify_batches(client: httpx.Client) -> None:
    name = make_key(client, "ed25519")
    r = client.post(f"/v1/keys/{name}/sign", json={"items": [
        {"message": b64(b"a")}, {"message": "not base64!"}, {"message": b64(b"c"), "x": 1}, 5]})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results[0]["signature"].startswith("10001")
    assert [error_code(httpx.Response(400, json=x)) for x in results[1:]] == [
        "validation_error", "validation_error", "validation_error"]
    r = client.post(f"/v1/keys/{name}/verify", json={"items": [
        {"message": b64(b"a"), "signature": results[0]["signature"]},
        {"message": b64(b"b"), "signature": results[0]["signature"]}]})
    assert r.json() == {"results": [{"valid": True}, {"valid": False}]}


# -- MACs ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "hmac-sm3"])
def test_mac_then_verify_mac_and_batch(client: httpx.Client, algorithm: str) -> None:
    name = make_key(client, algorithm)
    r = client.post(f"/v1/keys/{name}/mac", json={"message": b64(b"amount=1.00")})
    assert r.status_code == 200
    tag = r.json()
    assert tag["version"] == 10001 and tag["mac"].startswith("10001")
    check = {"message": b64(b"amount=1.00"), "mac": tag["mac"]}
    assert client.post(f"/v1/keys/{name}/verify-mac", json=check).json() == {"valid": True}
    check["message"] = b64(b"amount=9.00")
    assert client.post(f"/v1/keys/{name}/verify-mac", json=check).json() == {"valid": False}
    r = client.post(f"/v1/keys/{name}/mac", json={"items": [{"message": b64(b"amount=1.00")}]})
    assert r.json() == {"results": [tag]}


# -- asymmetric encryption ---------------------------------------------------------


@pytest.mark.parametrize("algorithm,pkeyopts", [
    ("sm2", []),
    ("rsa-2048", ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                  "-pkeyopt", "rsa_mgf1_md:sha256"])])
def test_server_decrypts_what_openssl_encrypted_to_the_public_key(
        client: httpx.Client, tmp_path: Path, algorithm: str, pkeyopts: list[str]) -> None:
    name = make_key(client, algorithm, "encrypt")
    exported = client.get(f"/v1/keys/{name}/public-key").json()
    (tmp_path / "public.pem").write_text(exported["pem"])
    (tmp_path / "pt").write_bytes(b"login password P@ss")
    done = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "public.pem"),
                   *pkeyopts, "-in", str(tmp_path / "pt"))
    assert done.returncode == 0, done.stderr
    ciphertext = f"{exported['version']:05d}" + b64(done.stdout)
    r = client.post(f"/v1/keys/{name}/decrypt", json={"ciphertext": ciphertext})
    assert r.status_code == 200
    assert base64.b64decode(r.json()["plaintext"]) == b"login password P@ss"


@pytest.mark.parametrize("algorithm", ["sm2", "rsa-2048"])
def test_asymmetric_encrypt_decrypt_and_limits(client: httpx.Client, algorithm: str) -> None:
    name = make_key(client, algorithm, "encrypt")
    r = client.post(f"/v1/keys/{name}/encrypt", json={"plaintext": b64(b"data key bytes")})
    assert r.status_code == 200
    ct = r.json()["ciphertext"]
    r = client.post(f"/v1/keys/{name}/decrypt", json={"ciphertext": ct})
    assert base64.b64decode(r.json()["plaintext"]) == b"data key bytes"
    r = client.post(f"/v1/keys/{name}/encrypt",
                    json={"plaintext": b64(b"x"), "context": {"a": "b"}})
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    r = client.post(f"/v1/keys/{name}/encrypt", json={"plaintext": b64(os.urandom(1000))})
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    tampered = ct[:-6] + ("AAAA" if ct[-6:-2] != "AAAA" else "BBBB") + ct[-2:]
    r = client.post(f"/v1/keys/{name}/decrypt", json={"ciphertext": tampered})
    assert r.status_code == 400 and error_code(r) == "decryption_failed"


# -- purposes, errors, permissions ----------------------------------------------------


def test_purposes_are_enforced(client: httpx.Client) -> None:
    signer = make_key(client, "sm2", "sign")
    box = make_key(client, "sm2", "encrypt")
    mac = make_key(client, "hmac-sha256")
    aes = make_key(client, "aes-256-gcm")
    for path, body in ((f"/v1/keys/{signer}/encrypt", {"plaintext": b64(b"x")}),
                       (f"/v1/keys/{box}/sign", {"message": b64(b"x")}),
                       (f"/v1/keys/{mac}/sign", {"message": b64(b"x")}),
                       (f"/v1/keys/{signer}/mac", {"message": b64(b"x")}),
                       (f"/v1/keys/{aes}/sign", {"message": b64(b"x")}),
                       (f"/v1/keys/{mac}/verify",
                        {"message": b64(b"x"), "signature": "10001AA=="})):
        r = client.post(path, json=body)
        assert r.status_code == 409 and error_code(r) == "operation_not_allowed", (path, r.text)
    for name in (mac, aes):
        r = client.get(f"/v1/keys/{name}/public-key")
        assert r.status_code == 409 and error_code(r) == "operation_not_allowed"


def test_request_errors(client: httpx.Client) -> None:
    name = make_key(client, "ed25519")
    cases = [
        ({"message": "***"}, 422, "validation_error"),
        ({"message": b64(b"m"), "unknown": 1}, 422, "validation_error"),
        ({"message": b64(b"m"), "options": "x"}, 422, "validation_error"),
        ({"message": b64(b"m"), "options": {"distinguishing_id": "x"}}, 400, "invalid_request"),
        ({}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        r = client.post(f"/v1/keys/{name}/sign", json=body)
        assert (r.status_code, error_code(r)) == (status, code), (body, r.text)
    r = client.post("/v1/keys/no-such-key/sign", json={"message": b64(b"m")})
    assert r.status_code == 404 and error_code(r) == "key_not_found"
    for query, status in (({"version": "abc"}, 422), ({"version": "10009"}, 404),
                          ({"other": "1"}, 422), ({"version": "1"}, 422)):
        r = client.get(f"/v1/keys/{name}/public-key", params=query)
        assert r.status_code == status, (query, r.text)


def test_app_tokens_may_sign_and_auditors_may_not(client: httpx.Client, base_url: str) -> None:
    name = make_key(client, "ed25519")
    app = client.post("/v1/apps", json={"name": "payments"}).json()
    auditor = client.post("/v1/apps", json={"name": "audit", "roles": ["auditor"]}).json()
    mac_key = make_key(client, "hmac-sm3")
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {app['token']}"}) as c:
        # Only bound apps use a key.
        assert c.post(f"/v1/keys/{mac_key}/mac", json={"message": b64(b"m")}).status_code == 403
        client.put(f"/v1/keys/{mac_key}/apps/{app['id']}", json={"operations": ["mac", "verify"]})
        client.put(f"/v1/keys/{name}/apps/{app['id']}", json={"operations": ["sign", "verify"]})
        tag = c.post(f"/v1/keys/{mac_key}/mac", json={"message": b64(b"m")}).json()["mac"]
        assert c.post(f"/v1/keys/{mac_key}/verify-mac",
                      json={"message": b64(b"m"), "mac": tag}).json() == {"valid": True}
        signed = c.post(f"/v1/keys/{name}/sign", json={"message": b64(b"m")})
        assert signed.status_code == 200
        checked = c.post(f"/v1/keys/{name}/verify", json={
            "message": b64(b"m"), "signature": signed.json()["signature"]})
        assert checked.json() == {"valid": True}
        assert c.get(f"/v1/keys/{name}/public-key").status_code == 200
    with httpx.Client(base_url=base_url,
                      headers={"Authorization": f"Bearer {auditor['token']}"}) as c:
        r = c.post(f"/v1/keys/{name}/sign", json={"message": b64(b"m")})
        assert r.status_code == 403 and error_code(r) == "permission_denied"


def test_openapi_documents_the_routes(client: httpx.Client) -> None:
    doc = client.get("/v1/openapi.json").json()
    for op, permission in (("sign", "crypto.sign"), ("verify", "crypto.verify"),
                           ("mac", "crypto.mac"), ("verify-mac", "crypto.verify")):
        assert doc["paths"][f"/v1/keys/{{name}}/{op}"]["post"]["x-permission"] == permission
    public = doc["paths"]["/v1/keys/{name}/public-key"]["get"]
    assert {"name": "version", "in": "query", "required": False,
            "schema": {"type": "integer"}} in public["parameters"]
    for schema in ("SignRequest", "SignResponse", "VerifyRequest", "VerifyResponse",
                   "MacRequest", "MacResponse", "VerifyMacRequest", "PublicKeyResponse"):
        assert schema in doc["components"]["schemas"]

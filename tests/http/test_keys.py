"""Key management endpoints through the real server."""

from __future__ import annotations

import httpx

from .conftest import error_code


def test_create_show_list(client: httpx.Client) -> None:
    r = client.post("/v1/keys", json={
        "name": "orders.pan", "description": "card numbers", "labels": {"team": "pay"},
        "rotation_policy": {"period_seconds": 90 * 86400, "notice_seconds": 86400}})
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["name"] == "orders.pan" and key["algorithm"] == "aes-256-gcm"
    assert key["purpose"] == "encrypt" and key["primary_version"] == 10001
    assert key["rotation_policy"] == {"period_seconds": 7776000, "notice_seconds": 86400}
    assert [v["version"] for v in key["versions"]] == [10001]
    assert "wrapped" not in str(key) and "blob" not in str(key)
    assert client.get("/v1/keys/orders.pan").json() == key
    names = [k["name"] for k in client.get("/v1/keys").json()["keys"]]
    assert "orders.pan" in names


def test_duplicate_key_is_409(client: httpx.Client, key: str) -> None:
    r = client.post("/v1/keys", json={"name": key})
    assert r.status_code == 409 and error_code(r) == "already_exists"


def test_create_validation(client: httpx.Client) -> None:
    for body, status, code in [
        ({"name": 5}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"name": "a b"}, 400, "invalid_request"),
        ({"name": "x" * 129}, 422, "validation_error"),
        ({"name": "ok-name", "bogus": 1}, 422, "validation_error"),
        ({"name": "ok-name", "algorithm": "rot13"}, 400, "unsupported_algorithm"),
        ({"name": "ok-name", "purpose": "sign"}, 400, "invalid_request"),
        ({"name": "ok-name", "rotation_policy": {"period_seconds": 5}}, 422, "validation_error"),
        ({"name": "ok-name", "rotation_policy": {"period_seconds": 100,
                                                  "notice_seconds": 100}}, 422, "validation_error"),
        ({"name": "ok-name", "labels": {"a": 1}}, 422, "validation_error"),
    ]:
        r = client.post("/v1/keys", json=body)
        assert (r.status_code, error_code(r)) == (status, code), (body, r.text)
    assert client.get("/v1/keys/ok-name").status_code == 404  # nothing half-written


def test_missing_key_is_404(client: httpx.Client) -> None:
    for method, path in [("GET", "/v1/keys/nope"), ("POST", "/v1/keys/nope/rotate"),
                         ("POST", "/v1/keys/nope/disable"),
                         ("POST", "/v1/keys/nope/versions/10001/state")]:
        body = {"state": "retired"} if path.endswith("/state") else None
        r = client.request(method, path, json=body)
        assert r.status_code == 404 and error_code(r) == "key_not_found", path


def test_rotate_and_rollback(client: httpx.Client, key: str) -> None:
    r = client.post(f"/v1/keys/{key}/rotate", json={"reason": "quarterly"})
    assert r.status_code == 200 and r.json()["primary_version"] == 10002
    states = {v["version"]: v["state"] for v in r.json()["versions"]}
    assert states == {10001: "expired", 10002: "active"}
    r = client.post(f"/v1/keys/{key}/rollback")
    assert r.json()["primary_version"] == 10001
    r = client.post(f"/v1/keys/{key}/rollback")
    assert r.status_code == 409 and error_code(r) == "invalid_state_transition"


def test_version_state_and_min_decryption_version(client: httpx.Client, key: str) -> None:
    ct = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).json()["ciphertext"]
    client.post(f"/v1/keys/{key}/rotate")
    r = client.post(f"/v1/keys/{key}/min-decryption-version", json={"version": 10002})
    assert r.status_code == 200 and r.json()["min_decryption_version"] == 10002
    assert client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct}).status_code == 400
    r = client.post(f"/v1/keys/{key}/min-decryption-version", json={"version": 10001})
    assert client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct}).status_code == 200
    r = client.post(f"/v1/keys/{key}/versions/10001/state", json={"state": "retired"})
    assert r.status_code == 200
    assert {v["version"]: v["state"] for v in r.json()["versions"]}[10001] == "retired"
    assert client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct}).status_code == 400
    r = client.post(f"/v1/keys/{key}/versions/10002/state", json={"state": "retired"})
    assert r.status_code == 409 and error_code(r) == "invalid_state_transition"
    r = client.post(f"/v1/keys/{key}/versions/10001/state", json={"state": "bogus"})
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    r = client.post(f"/v1/keys/{key}/versions/10077/state", json={"state": "retired"})
    assert r.status_code == 404 and error_code(r) == "version_not_found"
    r = client.post(f"/v1/keys/{key}/versions/10001/state", json={"state": 3})
    assert r.status_code == 422
    r = client.post(f"/v1/keys/{key}/min-decryption-version", json={"version": "10001"})
    assert r.status_code == 422


def test_disable_enable_and_deletion(client: httpx.Client, key: str) -> None:
    assert client.post(f"/v1/keys/{key}/disable").json()["status"] == "disabled"
    assert client.post(f"/v1/keys/{key}/enable").json()["status"] == "enabled"
    r = client.post(f"/v1/keys/{key}/schedule-deletion", json={"waiting_days": 7})
    assert r.status_code == 200 and r.json()["status"] == "pending_deletion"
    assert r.json()["deletion_at"] is not None
    r = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""})
    assert r.status_code == 409 and error_code(r) == "key_pending_deletion"
    r = client.post(f"/v1/keys/{key}/rotate")
    assert r.status_code == 409
    assert client.post(f"/v1/keys/{key}/cancel-deletion").json()["status"] == "disabled"
    r = client.post(f"/v1/keys/{key}/schedule-deletion", json={"waiting_days": "soon"})
    assert r.status_code == 422


def test_management_body_must_be_an_object(client: httpx.Client, key: str) -> None:
    r = client.post(f"/v1/keys/{key}/rotate", json=["reason"])
    assert r.status_code == 422
    r = client.post(f"/v1/keys/{key}/rotate", content=b"{nope")
    assert r.status_code == 400 and error_code(r) == "malformed_json"
    r = client.post(f"/v1/keys/{key}/rotate", json={"reason": 7})
    assert r.status_code == 422

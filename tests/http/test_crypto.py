"""Crypto endpoints through the real server: single calls, batches, errors."""

from __future__ import annotations

import base64

import httpx

from .conftest import error_code


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_encrypt_decrypt_round_trip(client: httpx.Client, key: str) -> None:
    r = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"card 4111")})
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == 10001 and body["ciphertext"].startswith("10001")
    assert r.headers["content-type"] == "application/json"
    r = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": body["ciphertext"]})
    assert r.status_code == 200
    assert base64.b64decode(r.json()["plaintext"]) == b"card 4111"


def test_empty_plaintext_round_trips(client: httpx.Client, key: str) -> None:
    ct = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).json()["ciphertext"]
    assert client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct}).json() == {
        "plaintext": ""}


def test_context_is_bound(client: httpx.Client, key: str) -> None:
    ct = client.post(f"/v1/keys/{key}/encrypt", json={
        "plaintext": b64(b"x"), "context": {"order": "1"}}).json()["ciphertext"]
    ok = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct, "context": {"order": "1"}})
    assert ok.status_code == 200
    for wrong in ({"order": "2"}, None):
        r = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct, "context": wrong})
        assert r.status_code == 400
        assert r.json() == {"error": {"code": "decryption_failed", "message": "decryption failed"}}


def test_tampered_ciphertext_fails_without_saying_why(client: httpx.Client, key: str) -> None:
    ct = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"abc")}).json()["ciphertext"]
    raw = bytearray(base64.b64decode(ct[5:]))
    raw[-1] ^= 1
    r = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct[:5] + b64(bytes(raw))})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "decryption_failed", "message": "decryption failed"}
    # An unknown version says the same.
    r = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": "10099" + ct[5:]})
    assert r.json()["error"]["code"] == "decryption_failed"


def test_malformed_ciphertext_is_400(client: httpx.Client, key: str) -> None:
    for bad in ("1", "abcdeAAAA", "10001!!!", "00001AAAA"):
        r = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": bad})
        assert r.status_code == 400 and error_code(r) == "invalid_ciphertext", bad


def test_rewrap_moves_to_the_primary_version(client: httpx.Client, key: str) -> None:
    old = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"p")}).json()
    assert client.post(f"/v1/keys/{key}/rotate").status_code == 200
    r = client.post(f"/v1/keys/{key}/rewrap", json={"ciphertext": old["ciphertext"]})
    assert r.status_code == 200
    new = r.json()
    assert new["version"] == 10002 and new["ciphertext"].startswith("10002")
    back = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": new["ciphertext"]}).json()
    assert base64.b64decode(back["plaintext"]) == b"p"


def test_rewrap_can_change_context(client: httpx.Client, key: str) -> None:
    ct = client.post(f"/v1/keys/{key}/encrypt", json={
        "plaintext": b64(b"p"), "context": {"a": "1"}}).json()["ciphertext"]
    r = client.post(f"/v1/keys/{key}/rewrap", json={
        "ciphertext": ct, "context": {"a": "1"}, "new_context": {"a": "2"}})
    new = r.json()["ciphertext"]
    assert client.post(f"/v1/keys/{key}/decrypt", json={
        "ciphertext": new, "context": {"a": "2"}}).status_code == 200
    assert client.post(f"/v1/keys/{key}/decrypt", json={
        "ciphertext": new, "context": {"a": "1"}}).status_code == 400


def test_datakey(client: httpx.Client, key: str) -> None:
    r = client.post(f"/v1/keys/{key}/datakey", json={"context": {"t": "x"}})
    assert r.status_code == 200
    body = r.json()
    plain = base64.b64decode(body["plaintext"])
    assert len(plain) == 32
    opened = client.post(f"/v1/keys/{key}/decrypt", json={
        "ciphertext": body["ciphertext"], "context": {"t": "x"}}).json()
    assert base64.b64decode(opened["plaintext"]) == plain
    only_wrapped = client.post(f"/v1/keys/{key}/datakey", json={
        "include_plaintext": False, "size": 16}).json()
    assert "plaintext" not in only_wrapped and only_wrapped["version"] == 10001
    r = client.post(f"/v1/keys/{key}/datakey", json={"size": 8})
    assert r.status_code == 422 and error_code(r) == "validation_error"


def test_batch_encrypt_with_a_failing_item(client: httpx.Client, key: str) -> None:
    items = [{"plaintext": b64(b"one")}, {"plaintext": 5}, {"plaintext": b64(b"three")},
             {"plaintext": "not base64!"}, "not an object", {"plaintext": "", "extra": 1}]
    r = client.post(f"/v1/keys/{key}/encrypt", json={"items": items})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == len(items)
    assert results[0]["version"] == 10001 and results[2]["version"] == 10001
    for i in (1, 3, 4, 5):
        assert results[i]["error"]["code"] == "validation_error", results[i]
        assert set(results[i]) == {"error"}
    r = client.post(f"/v1/keys/{key}/decrypt", json={"items": [
        {"ciphertext": results[0]["ciphertext"]}, {"ciphertext": "10001AAAA"},
        {"ciphertext": results[2]["ciphertext"]}]})
    out = r.json()["results"]
    assert base64.b64decode(out[0]["plaintext"]) == b"one"
    assert out[1]["error"]["code"] == "decryption_failed"
    assert base64.b64decode(out[2]["plaintext"]) == b"three"


def test_batch_of_datakeys_and_rewraps(client: httpx.Client, key: str) -> None:
    dks = client.post(f"/v1/keys/{key}/datakey", json={"items": [{}, {"size": 64}]}).json()
    assert [len(base64.b64decode(d["plaintext"])) for d in dks["results"]] == [32, 64]
    client.post(f"/v1/keys/{key}/rotate")
    rw = client.post(f"/v1/keys/{key}/rewrap", json={"items": [
        {"ciphertext": d["ciphertext"]} for d in dks["results"]]}).json()
    assert [r["version"] for r in rw["results"]] == [10002, 10002]


def test_batch_shape_errors(client: httpx.Client, key: str) -> None:
    r = client.post(f"/v1/keys/{key}/encrypt", json={"items": "x"})
    assert r.status_code == 422 and error_code(r) == "validation_error"
    r = client.post(f"/v1/keys/{key}/encrypt", json={"items": [], "plaintext": ""})
    assert r.status_code == 422
    r = client.post(f"/v1/keys/{key}/encrypt", json={"items": [{"plaintext": ""}] * 1001})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    r = client.post(f"/v1/keys/{key}/encrypt", json={"items": []})
    assert r.json() == {"results": []}


def test_unknown_key_is_404(client: httpx.Client) -> None:
    r = client.post("/v1/keys/no-such-key/encrypt", json={"plaintext": ""})
    assert r.status_code == 404 and error_code(r) == "key_not_found"
    r = client.post("/v1/keys/no-such-key/decrypt", json={"ciphertext": "10001AAAA"})
    assert r.status_code == 404


def test_wrong_types_are_422(client: httpx.Client, key: str) -> None:
    for body in ({"plaintext": 1}, {"plaintext": None}, {}, {"plaintext": "", "context": "x"},
                 {"plaintext": "", "context": {"a": 1}}, {"plaintext": "", "surprise": True},
                 [], "text", 42):
        r = client.post(f"/v1/keys/{key}/encrypt", json=body)
        assert r.status_code == 422, (body, r.text)
        assert error_code(r) == "validation_error"
    r = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": 10001})
    assert r.status_code == 422
    r = client.post(f"/v1/keys/{key}/encrypt", content=b"null")
    assert r.status_code == 422


def test_malformed_json_is_400(client: httpx.Client, key: str) -> None:
    for raw in (b"{", b"", b"\xff\xfe", b'{"plaintext": "AA==",}', b"NaN"):
        r = client.post(f"/v1/keys/{key}/encrypt", content=raw,
                        headers={"content-type": "application/json"})
        assert r.status_code == 400, raw
        assert error_code(r) == "malformed_json"


def test_oversize_body_is_413(client: httpx.Client, key: str) -> None:
    big = b'{"plaintext": "' + b"A" * (5 << 20) + b'"}'
    r = client.post(f"/v1/keys/{key}/encrypt", content=big)
    assert r.status_code == 413 and error_code(r) == "request_too_large"

    def chunks():  # no Content-Length: the limit holds while streaming too
        yield b'{"plaintext": "'
        for _ in range(80):
            yield b"A" * 65536
        yield b'"}'

    r = client.post(f"/v1/keys/{key}/encrypt", content=chunks())
    assert r.status_code == 413 and error_code(r) == "request_too_large"


def test_plaintext_over_the_service_limit_is_413(client: httpx.Client, key: str) -> None:
    r = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": b64(b"x" * ((1 << 20) + 1))})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"


def test_disabled_key_is_409(client: httpx.Client, key: str) -> None:
    ct = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""}).json()["ciphertext"]
    assert client.post(f"/v1/keys/{key}/disable", json={"reason": "test"}).status_code == 200
    r = client.post(f"/v1/keys/{key}/encrypt", json={"plaintext": ""})
    assert r.status_code == 409 and error_code(r) == "key_disabled"
    r = client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct})
    assert r.status_code == 409 and error_code(r) == "key_disabled"
    client.post(f"/v1/keys/{key}/enable")
    assert client.post(f"/v1/keys/{key}/decrypt", json={"ciphertext": ct}).status_code == 200


def test_wrong_method_is_405(client: httpx.Client, key: str) -> None:
    r = client.get(f"/v1/keys/{key}/encrypt")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"


def test_batch_on_a_disabled_key_fails_each_item(client: httpx.Client, key: str) -> None:
    client.post(f"/v1/keys/{key}/disable")
    r = client.post(f"/v1/keys/{key}/encrypt", json={"items": [{"plaintext": ""}] * 3})
    assert r.status_code == 200
    assert [x["error"]["code"] for x in r.json()["results"]] == ["key_disabled"] * 3

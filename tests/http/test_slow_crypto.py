"""Slow public-key operations run off the event loop (the crypto thread pool).

A real ``kmsframe serve`` (one uvicorn worker) loads the AES, RSA and SM2
plugins, once with the default crypto pool and once with
``--crypto-threads 0`` (every operation on the event loop, the behaviour
before). While a batch of RSA-4096 signatures is being computed, AES encrypts
sent to the same worker must come back long before the batch does with the
pool — and, to show that the check can fail, must wait behind the whole batch
without it. The assertions compare times measured in the same run with wide
margins (a tenth, a third of the batch's duration), never absolute times.

The rest checks that what the pool computes is right: signatures verify
outside kmsframe, decryption opens what ``cryptography`` encrypted, a bad item
fails alone, and a bad request still gets its error code and status.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from .config_server import init, serve, soft_config, stop
from .conftest import b64, crypto_as_test_app, make_key

ROOT_TOKEN = "kmsf_root_slow-crypto-" + "p" * 40
PLUGINS = ["hsm_soft", "algo_aes", "storage_sql", "algo_rsa", "algo_sm2"]
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@pytest.fixture(scope="module", params=["pool", "inline"])
def mode_url(tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    data = tmp_path_factory.mktemp(f"kms-slow-{request.param}")
    extra = ("--crypto-threads", "0") if request.param == "inline" else ()
    config = soft_config(data, PLUGINS)
    init(config)
    proc, url = serve(config, ROOT_TOKEN, *extra)
    yield request.param, url
    stop(proc, config)


def client_for(url: str, as_app: Callable[[httpx.Request], None]) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120,
                        headers={"Authorization": f"Bearer {ROOT_TOKEN}"},
                        event_hooks={"request": [as_app]})


@pytest.fixture(scope="module")
def mode_client(mode_url: tuple[str, str]) -> Iterator[tuple[str, httpx.Client]]:
    mode, url = mode_url
    # Crypto calls go out as a test app bound to each key (the root token is no app).
    with client_for(url, crypto_as_test_app(url, ROOT_TOKEN)) as c:
        yield mode, c


def test_aes_encrypts_are_not_stuck_behind_an_rsa_4096_batch(
        mode_client: tuple[str, httpx.Client]) -> None:
    mode, client = mode_client
    rsa = make_key(client, "rsa-4096", "sign")
    aes = make_key(client, "aes-256-gcm")
    message = b64(b"settlement file 2026-12-04")
    # Both keys cached in the worker, so only the operations' cost is measured.
    assert client.post(f"/v1/keys/{aes}/encrypt", json={"plaintext": message}).status_code == 200
    assert client.post(f"/v1/keys/{rsa}/sign", json={"message": message}).status_code == 200
    started = time.perf_counter()
    probe = client.post(f"/v1/keys/{rsa}/sign", json={"items": [{"message": message}] * 20})
    assert probe.status_code == 200, probe.text
    per_item = (time.perf_counter() - started) / 20
    # A batch that takes about two seconds here (at most the 1,000-item limit).
    items = max(100, min(1000, int(2.0 / per_item)))

    batch: dict[str, object] = {}

    def sign_batch() -> None:
        as_app = client.event_hooks["request"][0]
        with client_for(str(client.base_url), as_app) as other:
            sent = time.perf_counter()
            r = other.post(f"/v1/keys/{rsa}/sign", json={"items": [{"message": message}] * items})
            batch.update(sent=sent, done=time.perf_counter(), response=r)

    signer = threading.Thread(target=sign_batch)
    signer.start()
    time.sleep(0.5)  # the batch's body has arrived and its signing has begun
    latencies: list[float] = []
    finished_at: list[float] = []
    while signer.is_alive() and len(latencies) < 50:
        sent = time.perf_counter()
        r = client.post(f"/v1/keys/{aes}/encrypt", json={"plaintext": message})
        assert r.status_code == 200, r.text
        finished_at.append(time.perf_counter())
        latencies.append(finished_at[-1] - sent)
    signer.join()
    response = batch["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200, response
    results = response.json()["results"]
    assert len(results) == items and all(set(r) == {"signature", "version"} for r in results)
    duration = batch["done"] - batch["sent"]  # type: ignore[operator]
    assert latencies, ("no AES encrypt was even sent while the batch ran", items, duration)
    if mode == "pool":
        # Encrypts flow while the batch is signed: many finish before it, each
        # in a small fraction of its time.
        before = sum(1 for t in finished_at if t < batch["done"])  # type: ignore[operator]
        assert before >= 10, (before, duration)
        assert sorted(latencies)[len(latencies) // 2] < duration / 10, (latencies, duration)
    else:
        # On the event loop, the first encrypt waits for the whole batch.
        assert latencies[0] > duration / 3, (latencies[0], duration)


def test_rsa_4096_signatures_from_the_pool_verify_with_the_public_key(
        mode_client: tuple[str, httpx.Client]) -> None:
    _, client = mode_client
    name = make_key(client, "rsa-4096", "sign")
    public = serialization.load_pem_public_key(
        client.get(f"/v1/keys/{name}/public-key").json()["pem"].encode())
    messages = [f"payment {i}".encode() for i in range(8)]
    r = client.post(f"/v1/keys/{name}/sign", json={
        "items": [{"message": b64(m)} for m in messages] + [{"message": "not base64!"}]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[-1]["error"]["code"] == "validation_error"  # fails alone
    for message, result in zip(messages, results[:-1], strict=True):
        raw = base64.b64decode(result["signature"][5:])
        public.verify(raw, message, PSS, hashes.SHA256())  # type: ignore[union-attr, call-arg]
    # A single call's error travels back from the pool with its code and status.
    r = client.post(f"/v1/keys/{name}/sign", json={"message": b64(b"x"), "extra": 1})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    # Verify (also declared slow) tells a good signature from a tampered one.
    good = results[0]["signature"]
    bad = good[:5] + b64(bytes([base64.b64decode(good[5:])[0] ^ 1])
                         + base64.b64decode(good[5:])[1:])
    r = client.post(f"/v1/keys/{name}/verify", json={"items": [
        {"message": b64(messages[0]), "signature": good},
        {"message": b64(messages[0]), "signature": bad},
        {"message": b64(messages[1]), "signature": good}]})
    assert [x["valid"] for x in r.json()["results"]] == [True, False, False]


def test_rsa_4096_decrypts_in_the_pool_what_cryptography_encrypted(
        mode_client: tuple[str, httpx.Client]) -> None:
    _, client = mode_client
    name = make_key(client, "rsa-4096", "encrypt")
    public = serialization.load_pem_public_key(
        client.get(f"/v1/keys/{name}/public-key").json()["pem"].encode())
    secrets = [os.urandom(32) for _ in range(4)]
    bodies = ["10001" + b64(public.encrypt(s, OAEP))  # type: ignore[union-attr, call-arg]
              for s in secrets]
    r = client.post(f"/v1/keys/{name}/decrypt",
                    json={"items": [{"ciphertext": c} for c in bodies]})
    assert [base64.b64decode(x["plaintext"]) for x in r.json()["results"]] == secrets
    r = client.post(f"/v1/keys/{name}/decrypt", json={"ciphertext": bodies[0][:-8] + "AAAAAAA="})
    assert r.status_code == 400 and r.json()["error"]["code"] == "decryption_failed", r.text


def test_sm2_sign_verify_encrypt_decrypt_through_the_pool(
        mode_client: tuple[str, httpx.Client]) -> None:
    _, client = mode_client
    signer = make_key(client, "sm2", "sign")
    messages = [f"订单 {i}".encode() for i in range(6)]
    signed = client.post(f"/v1/keys/{signer}/sign",
                         json={"items": [{"message": b64(m)} for m in messages]}).json()
    signatures = [x["signature"] for x in signed["results"]]
    r = client.post(f"/v1/keys/{signer}/verify", json={"items": [
        {"message": b64(m), "signature": s} for m, s in zip(messages, signatures, strict=True)]
        + [{"message": b64(messages[0]), "signature": signatures[1]}]})
    assert [x["valid"] for x in r.json()["results"]] == [True] * 6 + [False]
    box = make_key(client, "sm2", "encrypt")
    plaintexts = [os.urandom(n) for n in (1, 32, 255)]
    sealed = client.post(f"/v1/keys/{box}/encrypt",
                         json={"items": [{"plaintext": b64(p)} for p in plaintexts]}).json()
    opened = client.post(f"/v1/keys/{box}/decrypt", json={"items": [
        {"ciphertext": x["ciphertext"]} for x in sealed["results"]]}).json()
    assert [base64.b64decode(x["plaintext"]) for x in opened["results"]] == plaintexts

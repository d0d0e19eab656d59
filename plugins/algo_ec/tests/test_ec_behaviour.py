"""Ed25519 and ECDSA P-256 handles: refusals, hygiene, and ``openssl`` interop."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from kmsframe_algo_ec import EcdsaP256, Ed25519

from kmsframe.errors import InvalidRequest, OperationNotAllowed
from kmsframe.secrets import KeyMaterial

ALGORITHMS = [Ed25519(), EcdsaP256()]


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.id)
def test_sign_verify_and_reject(algorithm) -> None:
    handle = algorithm.load(algorithm.generate(os.urandom))
    sig = handle.sign(b"message", {})
    assert handle.verify(b"message", sig, {}) is True
    assert handle.verify(b"messagE", sig, {}) is False
    for garbage in (b"", b"\x00", os.urandom(64), os.urandom(600)):
        assert handle.verify(b"message", garbage, {}) is False
    other = algorithm.load(algorithm.generate(os.urandom))
    assert other.verify(b"message", sig, {}) is False


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.id)
def test_generation_uses_the_given_generator(algorithm) -> None:
    """Same random bytes, same key: the HSM's generator really is the source."""
    stream = os.urandom(64)
    a = algorithm.generate(lambda n: stream[:n])
    b = algorithm.generate(lambda n: stream[:n])
    assert a == b
    assert algorithm.generate(os.urandom) != a


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.id)
def test_refusals_and_options(algorithm) -> None:
    handle = algorithm.load(algorithm.generate(os.urandom))
    for call in (lambda: handle.encrypt(b"x", b""), lambda: handle.decrypt(b"x", b""),
                 lambda: handle.mac(b"x")):
        with pytest.raises(OperationNotAllowed):
            call()
    with pytest.raises(InvalidRequest):
        handle.sign(b"x", {"distinguishing_id": "x"})


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.id)
def test_handle_hides_the_key_and_public_key_is_spki(algorithm) -> None:
    material = algorithm.generate(os.urandom)
    handle = algorithm.load(material)
    assert material.reveal().hex() not in repr(handle)
    with pytest.raises(TypeError):
        pickle.dumps(handle)
    pem = handle.public_key_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem


def test_material_of_the_other_algorithm_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        EcdsaP256().load(Ed25519().generate(os.urandom))
    with pytest.raises(InvalidRequest):
        Ed25519().load(EcdsaP256().generate(os.urandom))
    with pytest.raises(InvalidRequest):
        Ed25519().load(KeyMaterial(b"\x30\x00"))


def test_ecdsa_signature_is_der() -> None:
    handle = EcdsaP256().load(EcdsaP256().generate(os.urandom))
    sig = handle.sign(b"m", {})
    assert sig[0] == 0x30 and sig[1] == len(sig) - 2


def openssl(*args: str) -> bytes:
    done = subprocess.run(["openssl", *args], capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def test_openssl_verifies_our_ecdsa_signature_and_we_verify_its(tmp_path: Path) -> None:
    material = EcdsaP256().generate(os.urandom)
    handle = EcdsaP256().load(material)
    (tmp_path / "public.pem").write_text(handle.public_key_pem())
    (tmp_path / "private.der").write_bytes(material.reveal())
    (tmp_path / "msg").write_bytes(b"P-256 interop")
    (tmp_path / "sig").write_bytes(handle.sign(b"P-256 interop", {}))
    out = openssl("dgst", "-sha256", "-verify", str(tmp_path / "public.pem"),
                  "-signature", str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert b"Verified OK" in out
    theirs = openssl("dgst", "-sha256", "-keyform", "DER", "-sign", str(tmp_path / "private.der"),
                     str(tmp_path / "msg"))
    assert handle.verify(b"P-256 interop", theirs, {}) is True


def test_openssl_verifies_our_ed25519_signature_and_agrees_on_bytes(tmp_path: Path) -> None:
    material = Ed25519().generate(os.urandom)
    handle = Ed25519().load(material)
    (tmp_path / "public.pem").write_text(handle.public_key_pem())
    (tmp_path / "private.der").write_bytes(material.reveal())
    (tmp_path / "msg").write_bytes(b"Ed25519 interop")
    sig = handle.sign(b"Ed25519 interop", {})
    (tmp_path / "sig").write_bytes(sig)
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "public.pem"),
                  "-rawin", "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig"))
    assert b"Signature Verified Successfully" in out
    theirs = openssl("pkeyutl", "-sign", "-keyform", "DER", "-inkey", str(tmp_path / "private.der"),
                     "-rawin", "-in", str(tmp_path / "msg"))
    assert theirs == sig  # deterministic: the same bytes from both
    # openssl reads our PKCS#8 and derives the same public key
    derived = openssl("pkey", "-inform", "DER", "-in", str(tmp_path / "private.der"), "-pubout")
    assert serialization.load_pem_public_key(derived).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == serialization.load_pem_public_key(handle.public_key_pem().encode()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)

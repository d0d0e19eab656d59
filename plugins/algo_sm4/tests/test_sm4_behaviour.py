"""SM4 handles: round trips, binding, tampering, key hygiene, and OpenSSL interop."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
from kmsframe_algo_sm4 import HmacSm3, Sm4CbcHmacSm3, Sm4Gcm

from kmsframe.errors import DecryptionFailed, InvalidRequest, OperationNotAllowed
from kmsframe.secrets import KeyMaterial

ENCRYPTING = [Sm4Gcm(), Sm4CbcHmacSm3()]


@pytest.mark.parametrize("algorithm", ENCRYPTING, ids=lambda a: a.id)
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_round_trip(algorithm, size: int) -> None:
    handle = algorithm.load(algorithm.generate(os.urandom))
    plaintext = os.urandom(size)
    assert handle.decrypt(handle.encrypt(plaintext, b"aad"), b"aad") == plaintext


@pytest.mark.parametrize("algorithm", ENCRYPTING, ids=lambda a: a.id)
def test_aad_and_key_are_bound(algorithm) -> None:
    handle = algorithm.load(algorithm.generate(os.urandom))
    other = algorithm.load(algorithm.generate(os.urandom))
    body = handle.encrypt(b"card 4111111111111111", b"aad-1")
    with pytest.raises(DecryptionFailed):
        handle.decrypt(body, b"aad-2")
    with pytest.raises(DecryptionFailed):
        other.decrypt(body, b"aad-1")


@pytest.mark.parametrize("algorithm", ENCRYPTING, ids=lambda a: a.id)
def test_every_tampered_byte_is_rejected(algorithm) -> None:
    handle = algorithm.load(algorithm.generate(os.urandom))
    body = handle.encrypt(b"payment", b"aad")
    for i in range(len(body)):
        tampered = bytearray(body)
        tampered[i] ^= 0x80
        with pytest.raises(DecryptionFailed):
            handle.decrypt(bytes(tampered), b"aad")


@pytest.mark.parametrize("algorithm", ENCRYPTING, ids=lambda a: a.id)
@pytest.mark.parametrize("body", [b"", b"\x00" * 16, b"\x00" * 63, b"\xff" * 64, b"\x01" * 100])
def test_garbage_is_rejected(algorithm, body: bytes) -> None:
    handle = algorithm.load(algorithm.generate(os.urandom))
    with pytest.raises(DecryptionFailed):
        handle.decrypt(body, b"aad")


def test_cbc_hmac_uses_partitioned_keys() -> None:
    """Changing only the MAC half of the key breaks decryption; so does only the SM4 half."""
    raw = os.urandom(48)
    body = Sm4CbcHmacSm3().load(KeyMaterial(raw)).encrypt(b"data", b"")
    for lo, hi in ((0, 16), (16, 48)):
        changed = bytearray(raw)
        changed[lo] ^= 1
        with pytest.raises(DecryptionFailed):
            Sm4CbcHmacSm3().load(KeyMaterial(bytes(changed))).decrypt(body, b"")


@pytest.mark.parametrize("algorithm,size", [(Sm4Gcm(), 32), (Sm4CbcHmacSm3(), 16), (HmacSm3(), 16)],
                         ids=lambda x: getattr(x, "id", str(x)))
def test_wrong_key_size_is_refused(algorithm, size: int) -> None:
    with pytest.raises(InvalidRequest):
        algorithm.load(KeyMaterial(os.urandom(size)))


@pytest.mark.parametrize("algorithm", [*ENCRYPTING, HmacSm3()], ids=lambda a: a.id)
def test_handles_hide_their_key(algorithm) -> None:
    material = algorithm.generate(os.urandom)
    handle = algorithm.load(material)
    assert material.reveal().hex() not in repr(handle)
    with pytest.raises(TypeError):
        pickle.dumps(handle)


def test_purposes_are_enforced_by_the_handles() -> None:
    enc = Sm4Gcm().load(Sm4Gcm().generate(os.urandom))
    mac = HmacSm3().load(HmacSm3().generate(os.urandom))
    with pytest.raises(OperationNotAllowed):
        enc.sign(b"x", {})
    with pytest.raises(OperationNotAllowed):
        enc.mac(b"x")
    with pytest.raises(OperationNotAllowed):
        mac.encrypt(b"x", b"")
    with pytest.raises(OperationNotAllowed):
        mac.sign(b"x", {})
    assert enc.public_key_pem() is None and mac.public_key_pem() is None


def test_hmac_sm3_verify_is_exact() -> None:
    handle = HmacSm3().load(HmacSm3().generate(os.urandom))
    tag = handle.mac(b"message")
    assert handle.verify(b"message", tag, {}) is True
    assert handle.verify(b"message", tag[:-1], {}) is False
    assert handle.verify(b"messagE", tag, {}) is False


@pytest.fixture
def openssl() -> str:
    path = shutil.which("openssl")
    assert path, "openssl is required (scripts/apt-packages.txt)"
    return path


def test_openssl_decrypts_the_cbc_part_and_checks_the_hmac_sm3_tag(openssl: str,
                                                                   tmp_path: Path) -> None:
    raw = os.urandom(48)
    plaintext = b"interop with the openssl command line \xe5\xaf\x86"
    body = Sm4CbcHmacSm3().load(KeyMaterial(raw)).encrypt(plaintext, b"")
    iv, ciphertext, tag = body[:16], body[16:-32], body[-32:]
    (tmp_path / "ct").write_bytes(ciphertext)
    out = subprocess.run(
        [openssl, "enc", "-d", "-sm4-cbc", "-K", raw[:16].hex(), "-iv", iv.hex(),
         "-in", str(tmp_path / "ct")], capture_output=True, check=True)
    assert out.stdout == plaintext
    # MAC input with empty AAD: iv || ciphertext || 64-bit zero length.
    (tmp_path / "mac-input").write_bytes(iv + ciphertext + bytes(8))
    out = subprocess.run(
        [openssl, "dgst", "-sm3", "-mac", "HMAC", "-macopt", f"hexkey:{raw[16:].hex()}",
         "-r", str(tmp_path / "mac-input")], capture_output=True, check=True, text=True)
    assert out.stdout.split()[0] == tag.hex()

"""SM2 interoperability with the ``openssl`` command line (OpenSSL 3), both ways.

kmsframe → openssl: our SPKI/PKCS#8 encodings are read by openssl; our
signatures verify with ``-pkeyopt distid:...``; our ciphertexts decrypt.
openssl → kmsframe: openssl's ciphertexts to our public key decrypt; openssl's
signatures (made with our exported test key) verify.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from kmsframe_algo_sm2 import DEFAULT_DISTINGUISHING_ID, Sm2


def openssl(*args: str, input: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=input, capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.fixture
def key(tmp_path: Path):
    """A fresh kmsframe SM2 key; its PKCS#8 written out for openssl (tests only)."""
    algorithm = Sm2()
    material = algorithm.generate(os.urandom)
    (tmp_path / "private.der").write_bytes(material.reveal())
    handle = algorithm.load(material)
    (tmp_path / "public.pem").write_text(handle.public_key_pem())
    return handle, tmp_path


def test_openssl_reads_our_pkcs8_and_derives_our_public_key(key) -> None:
    handle, d = key
    derived = openssl("pkey", "-inform", "DER", "-in", str(d / "private.der"), "-pubout")
    assert derived.decode() == handle.public_key_pem()
    text = openssl("pkey", "-pubin", "-in", str(d / "public.pem"), "-noout", "-text")
    assert b"SM2" in text


@pytest.mark.parametrize("distid", [None, "ALICE123@YAHOO.COM"])
def test_openssl_verifies_our_signature(key, distid: str | None) -> None:
    handle, d = key
    message = "付款 100.00 CNY".encode()
    options = {} if distid is None else {"distinguishing_id": distid}
    (d / "msg").write_bytes(message)
    (d / "sig").write_bytes(handle.sign(message, options))
    ident = distid or DEFAULT_DISTINGUISHING_ID.decode()
    out = openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(d / "public.pem"), "-rawin",
                  "-digest", "sm3", "-pkeyopt", f"distid:{ident}", "-in", str(d / "msg"),
                  "-sigfile", str(d / "sig"))
    assert b"Signature Verified Successfully" in out


def test_openssl_rejects_our_signature_under_another_id(key) -> None:
    handle, d = key
    (d / "msg").write_bytes(b"m")
    (d / "sig").write_bytes(handle.sign(b"m", {}))
    done = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(d / "public.pem"), "-rawin",
         "-digest", "sm3", "-pkeyopt", "distid:someone-else", "-in", str(d / "msg"),
         "-sigfile", str(d / "sig")], capture_output=True)
    assert done.returncode != 0


def test_we_verify_openssls_signature(key) -> None:
    handle, d = key
    (d / "msg").write_bytes(b"signed by openssl")
    sig = openssl("pkeyutl", "-sign", "-keyform", "DER", "-inkey", str(d / "private.der"),
                  "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
                  "-in", str(d / "msg"))
    assert handle.verify(b"signed by openssl", sig, {}) is True
    assert handle.verify(b"signed by openssL", sig, {}) is False


def test_openssl_decrypts_our_ciphertext(key) -> None:
    handle, d = key
    (d / "ct").write_bytes(handle.encrypt(b"user password \x00\xff", b""))
    out = openssl("pkeyutl", "-decrypt", "-keyform", "DER", "-inkey", str(d / "private.der"),
                  "-in", str(d / "ct"))
    assert out == b"user password \x00\xff"


@pytest.mark.parametrize("size", [1, 32, 255])
def test_we_decrypt_openssls_ciphertext_to_our_public_key(key, size: int) -> None:
    handle, d = key
    plaintext = os.urandom(size)
    (d / "pt").write_bytes(plaintext)
    ct = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(d / "public.pem"),
                 "-in", str(d / "pt"))
    assert handle.decrypt(ct, b"") == plaintext

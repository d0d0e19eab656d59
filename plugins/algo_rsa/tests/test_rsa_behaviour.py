"""RSA handles: schemes per id, limits, refusals, and ``openssl`` interop both ways."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kmsframe_algo_rsa import ALGORITHMS, RsaAlgorithm

from kmsframe.errors import DecryptionFailed, InvalidRequest, OperationNotAllowed
from kmsframe.model import Purpose
from kmsframe.secrets import KeyMaterial


@pytest.fixture(scope="module")
def pss_material() -> KeyMaterial:
    return RsaAlgorithm(2048).generate(os.urandom)


@pytest.fixture(scope="module")
def pss(pss_material):
    return RsaAlgorithm(2048).load(pss_material)


@pytest.fixture(scope="module")
def v15_material() -> KeyMaterial:
    return RsaAlgorithm(2048, pkcs1v15=True).generate(os.urandom)


@pytest.fixture(scope="module")
def v15(v15_material):
    return RsaAlgorithm(2048, pkcs1v15=True).load(v15_material)


def _public(handle) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(handle.public_key_pem().encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def test_registered_ids_and_purposes() -> None:
    ids = {a.id: a.purposes for a in ALGORITHMS}
    assert ids == {
        "rsa-2048": {Purpose.ENCRYPT, Purpose.SIGN}, "rsa-3072": {Purpose.ENCRYPT, Purpose.SIGN},
        "rsa-4096": {Purpose.ENCRYPT, Purpose.SIGN}, "rsa-2048-pkcs1v15": {Purpose.SIGN},
        "rsa-3072-pkcs1v15": {Purpose.SIGN}, "rsa-4096-pkcs1v15": {Purpose.SIGN},
    }


def test_pss_signature_has_the_documented_parameters(pss) -> None:
    sig = pss.sign(b"message", {})
    _public(pss).verify(sig, b"message", padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                        hashes.SHA256())
    assert pss.sign(b"message", {}) != sig  # PSS is randomised


def test_pss_key_never_makes_or_accepts_pkcs1v15(pss) -> None:
    forged = pss._private.sign(b"message", padding.PKCS1v15(), hashes.SHA256())
    assert pss.verify(b"message", forged, {}) is False


def test_pkcs1v15_key_signs_deterministically_and_verifies(v15) -> None:
    sig = v15.sign(b"message", {})
    assert sig == v15.sign(b"message", {})
    _public(v15).verify(sig, b"message", padding.PKCS1v15(), hashes.SHA256())
    assert v15.verify(b"message", sig, {}) and not v15.verify(b"messagE", sig, {})


def test_pkcs1v15_key_does_not_encrypt(v15) -> None:
    with pytest.raises(OperationNotAllowed):
        v15.encrypt(b"x", b"")
    with pytest.raises(OperationNotAllowed):
        v15.decrypt(b"x" * 256, b"")


def test_oaep_round_trip_and_limit(pss) -> None:
    biggest = os.urandom(190)
    assert pss.decrypt(pss.encrypt(biggest, b""), b"") == biggest
    assert pss.decrypt(pss.encrypt(b"", b""), b"") == b""
    with pytest.raises(InvalidRequest):
        pss.encrypt(os.urandom(191), b"")


def test_oaep_uses_no_label(pss) -> None:
    ct = _public(pss).encrypt(b"hi", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(),
                                                  None))
    assert pss.decrypt(ct, b"ignored") == b"hi"
    labelled = _public(pss).encrypt(b"hi", padding.OAEP(padding.MGF1(hashes.SHA256()),
                                                        hashes.SHA256(), b"label"))
    with pytest.raises(DecryptionFailed):
        pss.decrypt(labelled, b"")


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00" * 256, b"\xff" * 256, os.urandom(300)])
def test_garbage_ciphertext_fails_cleanly(pss, body: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        pss.decrypt(body, b"")


@pytest.mark.parametrize("garbage", [b"", b"\x00", os.urandom(256), os.urandom(600)])
def test_garbage_signatures_are_invalid(pss, v15, garbage: bytes) -> None:
    assert pss.verify(b"m", garbage, {}) is False
    assert v15.verify(b"m", garbage, {}) is False


def test_options_are_refused(pss) -> None:
    with pytest.raises(InvalidRequest):
        pss.sign(b"m", {"salt": 20})


def test_material_of_another_size_or_kind_is_refused(pss_material) -> None:
    with pytest.raises(InvalidRequest):
        RsaAlgorithm(3072).load(pss_material)
    with pytest.raises(InvalidRequest):
        RsaAlgorithm(2048).load(KeyMaterial(os.urandom(64)))


def test_handle_hides_the_key(pss, pss_material) -> None:
    assert pss_material.reveal().hex()[:64] not in repr(pss)
    with pytest.raises(TypeError):
        pickle.dumps(pss)


@pytest.mark.parametrize("bits", [3072, 4096])
def test_larger_keys_round_trip(bits: int) -> None:
    algorithm = RsaAlgorithm(bits)
    handle = algorithm.load(algorithm.generate(os.urandom))
    assert _public(handle).key_size == bits
    assert handle.verify(b"m", handle.sign(b"m", {}), {})
    limit = algorithm.max_plaintext_size
    assert limit == bits // 8 - 66
    plaintext = os.urandom(limit)
    assert handle.decrypt(handle.encrypt(plaintext, b""), b"") == plaintext


# -- openssl ------------------------------------------------------------------


def openssl(*args: str) -> bytes:
    done = subprocess.run(["openssl", *args], capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.fixture
def files(tmp_path: Path, pss, pss_material):
    (tmp_path / "public.pem").write_text(pss.public_key_pem())
    (tmp_path / "private.der").write_bytes(pss_material.reveal())
    return tmp_path


def test_openssl_verifies_our_pss_signature(pss, files: Path) -> None:
    (files / "msg").write_bytes(b"settlement batch 2026-12-04")
    (files / "sig").write_bytes(pss.sign(b"settlement batch 2026-12-04", {}))
    out = openssl("dgst", "-sha256", "-verify", str(files / "public.pem"),
                  "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
                  "-signature", str(files / "sig"), str(files / "msg"))
    assert b"Verified OK" in out


def test_openssl_verifies_our_pkcs1v15_signature(v15, tmp_path: Path) -> None:
    (tmp_path / "public.pem").write_text(v15.public_key_pem())
    (tmp_path / "msg").write_bytes(b"legacy")
    (tmp_path / "sig").write_bytes(v15.sign(b"legacy", {}))
    out = openssl("dgst", "-sha256", "-verify", str(tmp_path / "public.pem"),
                  "-signature", str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert b"Verified OK" in out


def test_openssl_decrypts_our_oaep_ciphertext(pss, files: Path) -> None:
    (files / "ct").write_bytes(pss.encrypt(b"card 4111111111111111", b""))
    out = openssl("pkeyutl", "-decrypt", "-keyform", "DER", "-inkey", str(files / "private.der"),
                  "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                  "-pkeyopt", "rsa_mgf1_md:sha256", "-in", str(files / "ct"))
    assert out == b"card 4111111111111111"


def test_we_decrypt_openssls_oaep_ciphertext(pss, files: Path) -> None:
    (files / "pt").write_bytes(b"password from a browser")
    ct = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(files / "public.pem"),
                 "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                 "-pkeyopt", "rsa_mgf1_md:sha256", "-in", str(files / "pt"))
    assert pss.decrypt(ct, b"") == b"password from a browser"


def test_we_verify_openssls_pss_signature_with_salt_32_only(pss, files: Path) -> None:
    (files / "msg").write_bytes(b"m")
    good = openssl("dgst", "-sha256", "-keyform", "DER", "-sign", str(files / "private.der"),
                   "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
                   str(files / "msg"))
    assert pss.verify(b"m", good, {}) is True
    other_salt = openssl("dgst", "-sha256", "-keyform", "DER", "-sign", str(files / "private.der"),
                         "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:20",
                         str(files / "msg"))
    assert pss.verify(b"m", other_salt, {}) is False

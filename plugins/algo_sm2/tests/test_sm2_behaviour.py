"""SM2 handles and encodings: options, limits, refusals, key hygiene."""

from __future__ import annotations

import os
import pickle

import gmssl_pyx
import pytest
from kmsframe_algo_sm2 import MAX_DISTINGUISHING_ID, Sm2, encoding

from kmsframe.errors import DecryptionFailed, InvalidRequest, OperationNotAllowed
from kmsframe.secrets import KeyMaterial


@pytest.fixture(scope="module")
def handle():
    return Sm2().load(Sm2().generate(os.urandom))


def test_signature_is_der_and_randomised(handle) -> None:
    a, b = handle.sign(b"m", {}), handle.sign(b"m", {})
    assert a[0] == 0x30 and a[1] == len(a) - 2
    assert a != b


@pytest.mark.parametrize("signer_id", ["1234567812345678", "ALICE123@YAHOO.COM", "商户-42"])
def test_digest_path_agrees_with_the_bindings_all_in_one_calls(signer_id: str) -> None:
    """kmsframe computes Z_A itself (speed); GmSSL's own sign/verify must agree both ways."""
    material = Sm2().generate(os.urandom)
    private, public = encoding.parse_private_key_der(material.reveal())
    handle = Sm2().load(material)
    options = {"distinguishing_id": signer_id}
    ours = handle.sign(b"message", options)
    assert gmssl_pyx.sm2_verify(public, b"message", ours, signer_id.encode()) is True
    theirs = gmssl_pyx.sm2_sign(private, public, b"message", signer_id.encode())
    assert handle.verify(b"message", theirs, options) is True


def test_distinguishing_id_is_part_of_the_signature(handle) -> None:
    sig = handle.sign(b"m", {"distinguishing_id": "merchant-42"})
    assert handle.verify(b"m", sig, {"distinguishing_id": "merchant-42"}) is True
    assert handle.verify(b"m", sig, {}) is False


@pytest.mark.parametrize("options", [{"distinguishing_id": ""}, {"distinguishing_id": 5},
                                     {"distinguishing_id": "x" * (MAX_DISTINGUISHING_ID + 1)},
                                     {"id": "1234567812345678"}])
def test_bad_options_are_refused(handle, options) -> None:
    with pytest.raises(InvalidRequest):
        handle.sign(b"m", options)
    with pytest.raises(InvalidRequest):
        handle.verify(b"m", b"\x30\x00", options)


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\x30\x00", os.urandom(64), os.urandom(600)])
def test_garbage_signatures_are_invalid_not_errors(handle, garbage: bytes) -> None:
    assert handle.verify(b"m", garbage, {}) is False


@pytest.mark.parametrize("size", [0, 256, 1000])
def test_plaintext_outside_1_to_255_bytes_is_refused(handle, size: int) -> None:
    with pytest.raises(InvalidRequest):
        handle.encrypt(os.urandom(size), b"")


def test_every_tampered_ciphertext_byte_is_rejected(handle) -> None:
    body = handle.encrypt(b"payment card 4111111111111111", b"")
    for i in range(len(body)):
        tampered = bytearray(body)
        tampered[i] ^= 0x80
        with pytest.raises(DecryptionFailed):
            handle.decrypt(bytes(tampered), b"")


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x30" * 50, os.urandom(120), os.urandom(400)])
def test_garbage_ciphertexts_fail_cleanly(handle, body: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        handle.decrypt(body, b"")


def test_another_key_cannot_decrypt(handle) -> None:
    other = Sm2().load(Sm2().generate(os.urandom))
    with pytest.raises(DecryptionFailed):
        other.decrypt(handle.encrypt(b"secret", b""), b"")


def test_mac_is_refused(handle) -> None:
    with pytest.raises(OperationNotAllowed):
        handle.mac(b"m")


def test_key_material_is_pkcs8_and_hidden() -> None:
    material = Sm2().generate(os.urandom)
    private, public = encoding.parse_private_key_der(material.reveal())
    assert len(private) == 32 and len(public) == 64
    handle = Sm2().load(material)
    assert private.hex() not in repr(handle) and material.reveal().hex() not in repr(handle)
    with pytest.raises(TypeError):
        pickle.dumps(handle)


def test_public_key_pem_round_trips_through_spki() -> None:
    material = Sm2().generate(os.urandom)
    _, public = encoding.parse_private_key_der(material.reveal())
    pem = Sm2().load(material).public_key_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    der = encoding.public_key_der(public)
    assert encoding.parse_public_key_der(der) == public


def test_mismatched_key_pair_is_refused_at_load() -> None:
    a = encoding.parse_private_key_der(Sm2().generate(os.urandom).reveal())
    b = encoding.parse_private_key_der(Sm2().generate(os.urandom).reveal())
    with pytest.raises(InvalidRequest):
        Sm2().load(KeyMaterial(encoding.private_key_der(a[0], b[1])))


@pytest.mark.parametrize("material", [b"", b"\x30\x00", os.urandom(138)])
def test_non_pkcs8_material_is_refused(material: bytes) -> None:
    with pytest.raises(InvalidRequest):
        Sm2().load(KeyMaterial(material))


def test_truncated_or_padded_pkcs8_is_refused() -> None:
    raw = Sm2().generate(os.urandom).reveal()
    for bad in (raw[:-1], raw + b"\x00"):
        with pytest.raises(InvalidRequest):
            Sm2().load(KeyMaterial(bad))


def test_non_canonical_der_encodings_of_a_valid_signature_are_rejected(handle) -> None:
    """Signatures are not malleable through BER: only the exact DER verifies."""
    sig = handle.sign(b"m", {})
    assert sig[0] == 0x30 and sig[1] < 0x80
    body = sig[2:]
    r_len = body[1]
    r, rest = body[2:2 + r_len], body[2 + r_len:]
    padded_r = b"\x02" + bytes([r_len + 1]) + b"\x00" + r + rest
    variants = [
        b"\x30" + bytes([len(padded_r)]) + padded_r,  # non-minimal INTEGER
        b"\x30\x81" + bytes([len(body)]) + body,  # long-form length
        sig + b"\x00",  # trailing data
    ]
    assert handle.verify(b"m", sig, {}) is True
    for variant in variants:
        assert handle.verify(b"m", variant, {}) is False

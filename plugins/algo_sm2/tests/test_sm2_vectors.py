"""SM2 against the examples published in GM/T 0003.5-2012 (= GB/T 32918.5-2017).

No package ships SM2 vectors, so the standard's short published constants are
written here, with their source:

* Annex A.2 — signature on the recommended curve sm2p256v1: private key
  ``dA``, public key ``(xA, yA)``, message ``"message digest"``, signer ID
  ``1234567812345678`` (the GM/T 0009 default), the intermediate ``Z_A`` and
  ``e = SM3(Z_A || M)``, and the signature ``(r, s)``;
* Annex C — encryption to the same key pair of ``"encryption standard"``
  with the same ``k``, giving ``C1``, ``C3`` and ``C2``; serialised here as
  the GM/T 0009-2012 §7.2 DER ``SEQUENCE { x, y, hash, ciphertext }``.

GmSSL's API draws ``k`` itself, so the signature cannot be reproduced bit for
bit; instead the published signature must verify (and every altered version
must not), and the published ciphertext must decrypt (and every altered
version must not).
"""

from __future__ import annotations

import gmssl_pyx
import pytest
from kmsframe_algo_sm2 import Sm2, decrypt, encoding, verify_signature, z_value

from kmsframe.errors import DecryptionFailed
from kmsframe.secrets import KeyMaterial

D_A = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
X_A = bytes.fromhex("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020")
Y_A = bytes.fromhex("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
SIGNED_MESSAGE = b"message digest"
SIGNER_ID = b"1234567812345678"
Z_A = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
R = bytes.fromhex("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3")
S = bytes.fromhex("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA")

ENCRYPTED_MESSAGE = b"encryption standard"
C1_X = bytes.fromhex("04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73")
C1_Y = bytes.fromhex("E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0")
C3 = bytes.fromhex("59983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766")
C2 = bytes.fromhex("21886CA989CA9C7D58087307CA93092D651EFA")


def der_integer(value: bytes) -> bytes:
    value = value.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + bytes([len(value)]) + value


def der_sequence(*items: bytes) -> bytes:
    body = b"".join(items)
    assert len(body) < 0x80
    return b"\x30" + bytes([len(body)]) + body


def signature(r: bytes = R, s: bytes = S) -> bytes:
    return der_sequence(der_integer(r), der_integer(s))


def ciphertext(x: bytes = C1_X, y: bytes = C1_Y, c3: bytes = C3, c2: bytes = C2) -> bytes:
    return der_sequence(der_integer(x), der_integer(y), b"\x04" + bytes([len(c3)]) + c3,
                        b"\x04" + bytes([len(c2)]) + c2)


def flip(data: bytes, index: int = -1) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


@pytest.fixture
def standard_key():
    """The standard's key pair loaded as kmsframe key material (PKCS#8)."""
    return Sm2().load(KeyMaterial(encoding.private_key_der(D_A, X_A + Y_A)))


def test_ciphertext_encoding_is_the_gmt_0009_one() -> None:
    # The DER length of the whole example is 0x7C, as GM/T 0009 serialisations show.
    assert ciphertext()[:2] == b"\x30\x7c"


def test_z_and_e_are_the_published_intermediate_values() -> None:
    assert z_value(X_A + Y_A, SIGNER_ID) == Z_A
    assert gmssl_pyx.sm3_hash(Z_A + SIGNED_MESSAGE) == E


def test_published_signature_verifies_over_the_published_digest() -> None:
    assert gmssl_pyx.sm2_verify_sm3_digest(X_A + Y_A, E, signature()) is True


def test_published_signature_verifies_with_the_published_public_key() -> None:
    assert verify_signature(X_A + Y_A, SIGNED_MESSAGE, signature(), SIGNER_ID) is True


def test_published_signature_verifies_through_a_loaded_key(standard_key) -> None:
    assert standard_key.verify(SIGNED_MESSAGE, signature(), {}) is True
    assert standard_key.verify(SIGNED_MESSAGE, signature(),
                               {"distinguishing_id": SIGNER_ID.decode()}) is True


@pytest.mark.parametrize("case", ["r", "s", "message", "signer-id", "public-key", "swapped",
                                  "r-plus-n", "trailing-byte", "zero-s"])
def test_altered_published_signature_must_be_rejected(case: str) -> None:
    public, message, sig, signer = X_A + Y_A, SIGNED_MESSAGE, signature(), SIGNER_ID
    n = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
    if case == "r":
        sig = signature(r=flip(R))
    elif case == "s":
        sig = signature(s=flip(S))
    elif case == "message":
        message = b"message digesT"
    elif case == "signer-id":
        signer = b"1234567812345679"
    elif case == "public-key":
        public = Y_A + X_A
    elif case == "swapped":
        sig = signature(r=S, s=R)
    elif case == "r-plus-n":  # r + n is out of range: must not be accepted as r
        sig = signature(r=(int.from_bytes(R, "big") + n).to_bytes(33, "big"))
    elif case == "trailing-byte":
        sig = signature() + b"\x00"
    elif case == "zero-s":
        sig = signature(s=b"\x00")
    assert verify_signature(public, message, sig, signer) is False


def test_published_ciphertext_decrypts_to_the_published_message(standard_key) -> None:
    assert decrypt(D_A, ciphertext()) == ENCRYPTED_MESSAGE
    assert standard_key.decrypt(ciphertext(), b"") == ENCRYPTED_MESSAGE


@pytest.mark.parametrize("part", ["x", "y", "c3", "c2"])
def test_altered_published_ciphertext_must_be_rejected(standard_key, part: str) -> None:
    parts = {"x": C1_X, "y": C1_Y, "c3": C3, "c2": C2}
    parts[part] = flip(parts[part])
    with pytest.raises(DecryptionFailed):
        standard_key.decrypt(ciphertext(**parts), b"")


def test_published_ciphertext_in_c1c2c3_order_must_be_rejected(standard_key) -> None:
    """The old C1C2C3 order is not accepted as if it were C1C3C2."""
    swapped = der_sequence(der_integer(C1_X), der_integer(C1_Y), b"\x04" + bytes([len(C2)]) + C2,
                           b"\x04" + bytes([len(C3)]) + C3)
    with pytest.raises(DecryptionFailed):
        standard_key.decrypt(swapped, b"")


def test_the_standard_key_signs_and_encrypts_round_trip(standard_key) -> None:
    sig = standard_key.sign(SIGNED_MESSAGE, {})
    assert verify_signature(X_A + Y_A, SIGNED_MESSAGE, sig, SIGNER_ID)
    assert standard_key.decrypt(standard_key.encrypt(b"pw", b""), b"") == b"pw"

"""DER for SM2 keys: PKCS#8 private keys and SubjectPublicKeyInfo public keys.

GmSSL's binding takes raw keys (32-byte scalar, 64-byte ``X || Y``) while the
rest of the world — ``openssl``, Java, Go — speaks PKCS#8 and SPKI with the
``id-ecPublicKey`` algorithm and the ``sm2p256v1`` curve (GM/T 0010, GB/T
35276). The layouts are fixed-size, so they are written out here rather than
pulling in an ASN.1 library::

    SubjectPublicKeyInfo ::= SEQUENCE {
        SEQUENCE { OID 1.2.840.10045.2.1, OID 1.2.156.10197.1.301 },
        BIT STRING (0 unused bits) 04 || X || Y }

    PrivateKeyInfo ::= SEQUENCE {
        INTEGER 0,
        SEQUENCE { OID 1.2.840.10045.2.1, OID 1.2.156.10197.1.301 },
        OCTET STRING ECPrivateKey }

    ECPrivateKey ::= SEQUENCE {          -- RFC 5915
        INTEGER 1, OCTET STRING d(32),
        [0] OID 1.2.156.10197.1.301 OPTIONAL,
        [1] BIT STRING 04 || X || Y }     -- required here: GmSSL needs it to sign

Parsing is strict DER: definite minimal lengths, nothing trailing.
"""

from __future__ import annotations

import base64

ID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
SM2P256V1 = bytes.fromhex("06082a811ccf5501822d")
_ALGORITHM_ID = (b"\x30" + bytes([len(ID_EC_PUBLIC_KEY) + len(SM2P256V1)])
                 + ID_EC_PUBLIC_KEY + SM2P256V1)


class DerError(ValueError):
    """The bytes are not the DER structure expected."""


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + length + value


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One TLV at ``pos``: (tag, value, position after it)."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first in (0x81, 0x82):
        size = first - 0x80
        if pos + size > len(data):
            raise DerError("truncated length")
        length = int.from_bytes(data[pos:pos + size], "big")
        pos += size
        if length < 0x80 or (size == 2 and length < 0x100):
            raise DerError("non-minimal length")
    else:
        raise DerError("unsupported length")
    if pos + length > len(data):
        raise DerError("truncated value")
    return tag, data[pos:pos + length], pos + length


def _sequence_items(data: bytes) -> list[tuple[int, bytes]]:
    items, pos = [], 0
    while pos < len(data):
        tag, value, pos = _read(data, pos)
        items.append((tag, value))
    return items


def _one(data: bytes, tag: int) -> bytes:
    got, value, end = _read(data, 0)
    if got != tag or end != len(data):
        raise DerError("unexpected structure")
    return value


def public_key_der(public: bytes) -> bytes:
    """SPKI DER for a raw 64-byte ``X || Y`` public key."""
    if len(public) != 64:
        raise DerError("an SM2 public key is 64 bytes")
    return _tlv(0x30, _ALGORITHM_ID + _tlv(0x03, b"\x00\x04" + public))


def public_key_pem(public: bytes) -> str:
    body = base64.b64encode(public_key_der(public)).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def parse_public_key_der(der: bytes) -> bytes:
    """Raw ``X || Y`` from SPKI DER of an SM2 key."""
    items = _sequence_items(_one(der, 0x30))
    if len(items) != 2 or items[0] != (0x30, _ALGORITHM_ID[2:]) or items[1][0] != 0x03:
        raise DerError("not an SM2 SubjectPublicKeyInfo")
    bits = items[1][1]
    if len(bits) != 66 or bits[:2] != b"\x00\x04":
        raise DerError("not an uncompressed SM2 point")
    return bits[2:]


def private_key_der(private: bytes, public: bytes) -> bytes:
    """PKCS#8 DER for a raw 32-byte scalar and its 64-byte public key."""
    if len(private) != 32 or len(public) != 64:
        raise DerError("an SM2 key pair is a 32-byte scalar and a 64-byte point")
    ec_private_key = _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, private)
                          + _tlv(0xA1, _tlv(0x03, b"\x00\x04" + public)))
    return _tlv(0x30, b"\x02\x01\x00" + _ALGORITHM_ID + _tlv(0x04, ec_private_key))


def parse_private_key_der(der: bytes) -> tuple[bytes, bytes]:
    """(scalar, ``X || Y``) from SM2 PKCS#8 DER that includes the public key."""
    items = _sequence_items(_one(der, 0x30))
    if (len(items) != 3 or items[0] != (0x02, b"\x00")
            or items[1] != (0x30, _ALGORITHM_ID[2:]) or items[2][0] != 0x04):
        raise DerError("not SM2 PKCS#8")
    inner = _sequence_items(_one(items[2][1], 0x30))
    if len(inner) < 2 or inner[0] != (0x02, b"\x01") or inner[1][0] != 0x04 \
            or len(inner[1][1]) != 32:
        raise DerError("not an SM2 ECPrivateKey")
    public = None
    for tag, value in inner[2:]:
        if tag == 0xA0:
            if value != SM2P256V1:
                raise DerError("the key is not on sm2p256v1")
        elif tag == 0xA1:
            bits = _one(value, 0x03)
            if len(bits) != 66 or bits[:2] != b"\x00\x04":
                raise DerError("not an uncompressed SM2 point")
            public = bits[2:]
        else:
            raise DerError("unexpected field in ECPrivateKey")
    if public is None:
        raise DerError("the PKCS#8 key lacks its public key")
    return inner[1][1], public


# ---------------------------------------------------------------------------
# Signatures and ciphertexts: checked here before GmSSL sees them
# ---------------------------------------------------------------------------
#
# GmSSL is built with its error trace on (``#define DEBUG 1`` in
# gmssl/error.h, no run-time switch): every input it rejects prints
# ``file.c:line:function():`` lines on the process's stderr. Malformed
# signatures and ciphertexts are refused here instead, silently; see the
# package docstring for what still reaches GmSSL.

def _integer(tag: int, value: bytes) -> int:
    """A non-negative DER INTEGER in minimal form."""
    if tag != 0x02 or not value or value[0] & 0x80 \
            or (len(value) > 1 and value[0] == 0 and not value[1] & 0x80):
        raise DerError("not a minimal non-negative INTEGER")
    return int.from_bytes(value, "big")


def parse_signature(der: bytes) -> tuple[int, int]:
    """``(r, s)`` from a DER ``SEQUENCE { INTEGER r, INTEGER s }``."""
    items = _sequence_items(_one(der, 0x30))
    if len(items) != 2:
        raise DerError("a signature is two INTEGERs")
    return _integer(*items[0]), _integer(*items[1])


def parse_ciphertext(der: bytes) -> tuple[int, int, bytes, bytes]:
    """``(x, y, C3, C2)`` from DER ``SEQUENCE { INTEGER x, INTEGER y,
    OCTET STRING C3, OCTET STRING C2 }`` (GM/T 0009 §7.2)."""
    items = _sequence_items(_one(der, 0x30))
    if len(items) != 4 or items[2][0] != 0x04 or items[3][0] != 0x04:
        raise DerError("not an SM2 ciphertext")
    return _integer(*items[0]), _integer(*items[1]), items[2][1], items[3][1]

"""The wrapped-key blob this backend stores, and how ``aad`` is bound in it.

The core stores the blob opaquely (``WrappedKey.blob``); its first two bytes
say how to open it, so a deployment can change ``mechanism`` (after a
master-key rotation) and still open every older blob::

    format(1) = 0x01 || scheme(1) || body

    scheme 0x01  aes-gcm:           nonce(12) || AES-256-GCM(MK, WK, aad=aad)  (tag 16)
    scheme 0x02  aes-key-wrap-pad:  KWP(MK, SHA-256(LABEL || aad) || WK)        (RFC 5649)

AES-GCM binds ``aad`` natively; the nonce comes from the token's generator
and the encryption runs inside the token (C_Encrypt with CKM_AES_GCM).

AES key wrap with padding (CKM_AES_KEY_WRAP_PAD) has no associated data. It
is a deterministic authenticated encryption of its *whole* payload (every
output bit depends on every input bit and a 64-bit integrity value is
checked on unwrap), so we bind ``aad`` by putting a 32-byte digest of it in
front of the key inside the wrapped payload (the SIV idea of "authenticate
the header by enciphering it"). Unwrap recomputes the digest and compares it
in constant time: a blob moved to another key record, version or algorithm
fails. The alternative — a per-record KEK derived in the token — would need
the master key to carry CKA_DERIVE, and SoftHSM2 lets a PIN holder derive
*extractable* keys, so we keep the master key's capabilities to wrap/unwrap.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from kmsframe.errors import IntegrityError
from kmsframe.secrets import KeyMaterial, constant_time_equal

FORMAT = 0x01
SCHEME_GCM = 0x01
SCHEME_KWP = 0x02
SCHEMES = {"aes-gcm": SCHEME_GCM, "aes-key-wrap-pad": SCHEME_KWP}
NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_LABEL = b"kmsframe/pkcs11-kwp-aad/v1\x00"
DIGEST_BYTES = 32


def header(scheme: int) -> bytes:
    return bytes((FORMAT, scheme))


def split(blob: bytes) -> tuple[int, bytes]:
    """(scheme, body) of a blob; an unknown format is an integrity failure."""
    if len(blob) < 2 or blob[0] != FORMAT or blob[1] not in (SCHEME_GCM, SCHEME_KWP):
        raise IntegrityError(log_detail="wrapped key blob has an unknown format")
    return blob[1], blob[2:]


def aad_digest(aad: bytes) -> bytes:
    return hashlib.sha256(_AAD_LABEL + aad).digest()


def kwp_payload(material: KeyMaterial, aad: bytes) -> bytes:
    return aad_digest(aad) + material.reveal()


def kwp_material(payload: bytes, aad: bytes) -> KeyMaterial:
    """Check the bound digest and return the key; any mismatch is IntegrityError."""
    if len(payload) <= DIGEST_BYTES or not constant_time_equal(
            payload[:DIGEST_BYTES], aad_digest(aad)):
        raise IntegrityError(log_detail="a wrapped key failed to unwrap")
    return KeyMaterial(payload[DIGEST_BYTES:])


def open_on_host(key: KeyMaterial, blob: bytes, aad: bytes) -> KeyMaterial | None:
    """Open a blob with the master key's bytes outside the token, or None.

    Only for ceremonies that hold the rebuilt key anyway (re-sharing): it
    proves that the bytes custodians rebuilt are the key in the token.
    """
    scheme, body = split(blob)
    try:
        if scheme == SCHEME_GCM:
            return KeyMaterial(AESGCM(key.reveal()).decrypt(
                body[:NONCE_BYTES], body[NONCE_BYTES:], aad))
        return kwp_material(aes_key_unwrap_with_padding(key.reveal(), body), aad)
    except (InvalidTag, InvalidUnwrap, IntegrityError, ValueError):
        return None

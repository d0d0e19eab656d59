"""M-of-N custodian shares of a master key, and its key check value (KCV).

A master key that must exist in more than one token (redundancy, disaster
recovery) is created once from the token's random generator, split into N
Shamir shares of which any M rebuild it, and loaded into each token as a
sensitive, non-extractable object. The shares are shown once, one to each
custodian; the key bytes are dropped as soon as the tokens hold it.

Shamir's scheme is pycryptodome's (GF(2^128), 16-byte secrets): a 32-byte key
is split as two halves with the same share indices. A share's text form::

    kms-mk-share:1:<master key id>:<M>:<index>:<hex of 32 bytes>:<kcv hex>:<mechanism>

The mechanism (``aes-gcm`` or ``aes-key-wrap-pad``) is the one the key was
made for, so a restore gives the key the same capabilities in a new token
whatever that deployment's current setting is.

The KCV is the first 5 bytes of AES-CMAC(MK, 0^128) (the AES key check value
of ANSI X9.24-1:2017). It lets each custodian see which master key a share
belongs to and lets a restore refuse a wrong combination *before* any token
is touched; fewer than M shares, or a forged one, rebuild a different key
whose KCV does not match.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from kmsframe.errors import InvalidRequest
from kmsframe.secrets import KeyMaterial, Secret, constant_time_equal

PREFIX = "kms-mk-share:1:"
KCV_BYTES = 5


def cmac(key: KeyMaterial, message: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B)."""
    mac = CMAC(algorithms.AES(key.reveal()))
    mac.update(message)
    return mac.finalize()


def kcv(key: KeyMaterial) -> str:
    """AES key check value: leftmost 5 bytes of CMAC(key, 16 zero bytes), hex."""
    return cmac(key, bytes(16))[:KCV_BYTES].hex()


@attrs.frozen(slots=True)
class ParsedShare:
    master_key_id: str
    threshold: int
    index: int
    value: bytes = attrs.field(repr=False)
    kcv: str
    mechanism: str


def split(key: KeyMaterial, master_key_id: str, threshold: int, count: int,
          mechanism: str = "aes-gcm") -> list[Secret]:
    """N shares of ``key`` of which any ``threshold`` rebuild it."""
    if not isinstance(threshold, int) or not isinstance(count, int) \
            or not 2 <= threshold <= count <= 255:
        raise InvalidRequest("shares need 2 <= threshold <= count <= 255")
    raw = key.reveal()
    if len(raw) != 32:
        raise InvalidRequest("a master key is 32 bytes")
    check = kcv(key)
    low = Shamir.split(threshold, count, raw[:16], ssss=False)
    high = Shamir.split(threshold, count, raw[16:], ssss=False)
    return [
        Secret.from_text(
            f"{PREFIX}{master_key_id}:{threshold}:{i}:{(a + b).hex()}:{check}:{mechanism}")
        for (i, a), (_, b) in zip(low, high, strict=True)
    ]


def parse(share: Secret) -> ParsedShare:
    text = share.reveal_text().strip()
    try:
        if not text.startswith(PREFIX):
            raise ValueError
        mk_id, threshold, index, hex_value, check, mechanism = text[len(PREFIX):].split(":")
        value = bytes.fromhex(hex_value)
        parsed = ParsedShare(mk_id, int(threshold), int(index), value, check, mechanism)
        if len(value) != 32 or not 1 <= parsed.index <= 255 or not 2 <= parsed.threshold <= 255 \
                or len(bytes.fromhex(check)) != KCV_BYTES or not mk_id:
            raise ValueError
    except ValueError:
        # Never echo the share: it is secret.
        raise InvalidRequest("a master-key share is malformed") from None
    return parsed


def combine(shares: Sequence[Secret]) -> tuple[str, KeyMaterial, str]:
    """Rebuild (master key id, key, mechanism) from at least M shares of one key."""
    parsed = [parse(s) for s in shares]
    if not parsed:
        raise InvalidRequest("no master-key shares were given")
    first = parsed[0]
    if any((p.master_key_id, p.threshold, p.kcv, p.mechanism) != (
            first.master_key_id, first.threshold, first.kcv, first.mechanism) for p in parsed):
        raise InvalidRequest("the shares belong to different master keys")
    by_index = {p.index: p.value for p in parsed}
    if len(by_index) < first.threshold:
        raise InvalidRequest(
            f"master key {first.master_key_id} needs {first.threshold} distinct shares, "
            f"got {len(by_index)}")
    items = sorted(by_index.items())
    low = Shamir.combine([(i, v[:16]) for i, v in items], ssss=False)
    high = Shamir.combine([(i, v[16:]) for i, v in items], ssss=False)
    key = KeyMaterial(low + high)
    if not constant_time_equal(kcv(key).encode(), first.kcv.encode()):
        raise InvalidRequest(
            f"the shares do not rebuild master key {first.master_key_id} (check value mismatch)")
    return first.master_key_id, key, first.mechanism

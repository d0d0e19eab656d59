"""M-of-N Shamir shares of a 32-byte unseal key, on pycryptodome.

pycryptodome's Shamir scheme works on 16-byte secrets (GF(2^128)); a 32-byte
key is split as two halves with the same share indices, as its documentation
suggests. A share's text form is ``kms-share-<index>-<hex of 32 bytes>``.
Combining fewer than the threshold yields a wrong key, which the keystore's
authenticated check then rejects.
"""

from __future__ import annotations

from Crypto.Protocol.SecretSharing import Shamir

from kmsframe.errors import ConfigurationError
from kmsframe.secrets import KeyMaterial, Secret

PREFIX = "kms-share-"


def split(key: KeyMaterial, threshold: int, count: int) -> list[Secret]:
    if not 2 <= threshold <= count <= 255:
        raise ConfigurationError("shares need 2 <= threshold <= count <= 255")
    raw = key.reveal()
    if len(raw) != 32:
        raise ValueError("the unseal key is 32 bytes")
    low = Shamir.split(threshold, count, raw[:16], ssss=False)
    high = Shamir.split(threshold, count, raw[16:], ssss=False)
    return [
        Secret.from_text(f"{PREFIX}{i}-{(a + b).hex()}")
        for (i, a), (j, b) in zip(low, high, strict=True)
        if i == j
    ]


def combine(shares: list[Secret]) -> KeyMaterial:
    parsed: dict[int, bytes] = {}
    for share in shares:
        text = share.reveal_text().strip()
        try:
            if not text.startswith(PREFIX):
                raise ValueError
            index_text, hex_text = text[len(PREFIX):].split("-", 1)
            index, value = int(index_text), bytes.fromhex(hex_text)
            if len(value) != 32 or not 1 <= index <= 255:
                raise ValueError
        except ValueError:
            raise ConfigurationError("an unseal share is malformed") from None
        parsed[index] = value
    if len(parsed) < 2:
        raise ConfigurationError("at least two distinct unseal shares are needed")
    items = sorted(parsed.items())
    low = Shamir.combine([(i, v[:16]) for i, v in items], ssss=False)
    high = Shamir.combine([(i, v[16:]) for i, v in items], ssss=False)
    return KeyMaterial(low + high)

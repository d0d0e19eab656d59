"""``sm4-cbc-hmac-sm3``: SM4-CBC with PKCS#7 padding, then HMAC-SM3 (encrypt-then-MAC).

For systems that must use CBC. The construction follows the shape of
AES-CBC-HMAC-SHA2 (RFC 7518 §5.2), with SM4 and SM3:

* key material is 48 bytes, *partitioned*: ``enc_key(16) || mac_key(32)`` —
  the two keys are independent random bytes and never used for anything else;
* ``iv`` is 16 fresh random bytes per message;
* ``tag = HMAC-SM3(mac_key, aad || iv || ciphertext || bit_length(aad) as 8-byte big-endian)``,
  the full 32 bytes (the length suffix keeps ``aad`` and ``iv`` from sliding);

Output layout: ``iv(16) || ciphertext || tag(32)``. Decryption checks the tag
in constant time *before* touching the padding, so there is no padding oracle.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kmsframe.errors import DecryptionFailed, InvalidRequest
from kmsframe.model import Operation, Purpose
from kmsframe.secrets import KeyMaterial, constant_time_equal

from .refusals import EncryptOnly

ENC_KEY_SIZE = 16
MAC_KEY_SIZE = 32
KEY_SIZE = ENC_KEY_SIZE + MAC_KEY_SIZE
BLOCK_SIZE = 16
TAG_SIZE = 32


def _tag(mac_key: bytes, aad: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    h = hmac.HMAC(mac_key, hashes.SM3())
    h.update(aad)
    h.update(iv)
    h.update(ciphertext)
    h.update(struct.pack(">Q", len(aad) * 8))
    return h.finalize()


class Sm4CbcHmacHandle(EncryptOnly):
    __slots__ = ("_enc_key", "_mac_key")

    def __init__(self, material: KeyMaterial) -> None:
        raw = material.reveal()
        self._enc_key = raw[:ENC_KEY_SIZE]
        self._mac_key = raw[ENC_KEY_SIZE:]

    def __repr__(self) -> str:
        return "Sm4CbcHmacHandle(<key hidden>)"

    def encrypt(self, plaintext: bytes, aad: bytes,
                _urandom: Callable[[int], bytes] = os.urandom) -> bytes:
        iv = _urandom(BLOCK_SIZE)
        padder = padding.PKCS7(BLOCK_SIZE * 8).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.SM4(self._enc_key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        return iv + ciphertext + _tag(self._mac_key, aad, iv, ciphertext)

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        body_len = len(ciphertext) - BLOCK_SIZE - TAG_SIZE
        if body_len < BLOCK_SIZE or body_len % BLOCK_SIZE:
            raise DecryptionFailed()
        iv = ciphertext[:BLOCK_SIZE]
        body = ciphertext[BLOCK_SIZE:-TAG_SIZE]
        if not constant_time_equal(_tag(self._mac_key, aad, iv, body), ciphertext[-TAG_SIZE:]):
            raise DecryptionFailed()
        decryptor = Cipher(algorithms.SM4(self._enc_key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        unpadder = padding.PKCS7(BLOCK_SIZE * 8).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            # Only reachable with a valid tag, i.e. never for a forgery.
            raise DecryptionFailed() from None


class Sm4CbcHmacSm3:
    id = "sm4-cbc-hmac-sm3"
    purposes = frozenset({Purpose.ENCRYPT})
    key_size = KEY_SIZE
    data_key_size = KEY_SIZE
    # Microseconds per call: served on the event loop (a thread hop costs more).
    slow_operations: frozenset[Operation] = frozenset()

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        return KeyMaterial(random_bytes(KEY_SIZE))

    def load(self, material: KeyMaterial) -> Sm4CbcHmacHandle:
        if len(material) != KEY_SIZE:
            raise InvalidRequest("sm4-cbc-hmac-sm3 keys are 48 bytes (16 for SM4, 32 for HMAC-SM3)")
        return Sm4CbcHmacHandle(material)

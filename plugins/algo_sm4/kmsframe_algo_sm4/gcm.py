"""``sm4-gcm``: SM4 in Galois/Counter Mode (RFC 8998, NIST SP 800-38D).

Output layout: ``nonce(12) || ciphertext || tag(16)`` with a fresh random
96-bit nonce per message, the same layout as ``aes-256-gcm``. Random nonces
are safe for up to 2**32 messages per key version; the rotation policy exists
to stay far below that.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kmsframe.errors import DecryptionFailed, InvalidRequest
from kmsframe.model import Operation, Purpose
from kmsframe.secrets import KeyMaterial

from .refusals import EncryptOnly

KEY_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """SM4-GCM encryption: ``ciphertext || tag``."""
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    return encryptor.update(plaintext) + encryptor.finalize() + encryptor.tag


def open_(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """SM4-GCM decryption of ``ciphertext || tag``; raises ``InvalidTag``."""
    tag = sealed[-TAG_SIZE:]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    return decryptor.update(sealed[:-TAG_SIZE]) + decryptor.finalize()


class Sm4GcmHandle(EncryptOnly):
    __slots__ = ("_key",)

    def __init__(self, material: KeyMaterial) -> None:
        self._key = material.reveal()

    def __repr__(self) -> str:
        return "Sm4GcmHandle(<key hidden>)"

    def encrypt(self, plaintext: bytes, aad: bytes,
                _urandom: Callable[[int], bytes] = os.urandom) -> bytes:
        nonce = _urandom(NONCE_SIZE)
        return nonce + seal(self._key, nonce, plaintext, aad)

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        if len(ciphertext) < NONCE_SIZE + TAG_SIZE:
            raise DecryptionFailed()
        try:
            return open_(self._key, ciphertext[:NONCE_SIZE], ciphertext[NONCE_SIZE:], aad)
        except InvalidTag:
            raise DecryptionFailed() from None


class Sm4Gcm:
    id = "sm4-gcm"
    purposes = frozenset({Purpose.ENCRYPT})
    key_size = KEY_SIZE
    data_key_size = KEY_SIZE
    # Microseconds per call: served on the event loop (a thread hop costs more).
    slow_operations: frozenset[Operation] = frozenset()

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        return KeyMaterial(random_bytes(KEY_SIZE))

    def load(self, material: KeyMaterial) -> Sm4GcmHandle:
        if len(material) != KEY_SIZE:
            raise InvalidRequest("sm4-gcm keys are 16 bytes")
        return Sm4GcmHandle(material)

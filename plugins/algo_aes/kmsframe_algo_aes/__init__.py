"""AES-256-GCM (NIST SP 800-38D) working keys: ``aes-256-gcm``.

Output layout: ``nonce(12) || ciphertext || tag(16)`` with a fresh random
96-bit nonce per message. Random nonces are safe for up to 2**32 messages per
key version; rotate well before that (the rotation policy exists for it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import kmsframe
from kmsframe.errors import DecryptionFailed, InvalidRequest, OperationNotAllowed
from kmsframe.model import Operation, Purpose
from kmsframe.nonces import NoncePool
from kmsframe.secrets import KeyMaterial

NONCE_SIZE = 12
TAG_SIZE = 16


class AesGcmHandle:
    __slots__ = ("_aead", "_nonce")

    def __init__(self, material: KeyMaterial, nonces: Callable[[], bytes]) -> None:
        self._aead = AESGCM(material.reveal())
        self._nonce = nonces

    def __repr__(self) -> str:
        return "AesGcmHandle(<key hidden>)"

    def __reduce__(self) -> Any:
        raise TypeError("key handles refuse to be pickled")

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = self._nonce()
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        if len(ciphertext) < NONCE_SIZE + TAG_SIZE:
            raise DecryptionFailed()
        try:
            return self._aead.decrypt(ciphertext[:NONCE_SIZE], ciphertext[NONCE_SIZE:], aad)
        except InvalidTag:
            raise DecryptionFailed() from None

    def sign(self, message: bytes, options: Mapping[str, Any]) -> bytes:
        raise OperationNotAllowed("AES keys do not sign")

    def verify(self, message: bytes, signature: bytes, options: Mapping[str, Any]) -> bool:
        raise OperationNotAllowed("AES keys do not verify")

    def mac(self, message: bytes) -> bytes:
        raise OperationNotAllowed("AES-GCM keys do not compute MACs")

    def public_key_pem(self) -> str | None:
        return None


class Aes256Gcm:
    id = "aes-256-gcm"
    purposes = frozenset({Purpose.ENCRYPT})
    key_size = 32
    data_key_size = 32
    # Microseconds per call: served on the event loop (a thread hop costs more).
    slow_operations: frozenset[Operation] = frozenset()

    def __init__(self, nonces: Callable[[], bytes] | None = None) -> None:
        # Random 96-bit nonces from the OS CSPRNG, fetched in batches.
        self._nonces = nonces or NoncePool(NONCE_SIZE).take

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        return KeyMaterial(random_bytes(self.key_size))

    def load(self, material: KeyMaterial) -> AesGcmHandle:
        if len(material) != self.key_size:
            raise InvalidRequest("aes-256-gcm keys are 32 bytes")
        return AesGcmHandle(material, self._nonces)


@kmsframe.hookimpl
def kms_register_algorithms(register: Callable[[Any], None]) -> None:
    register(Aes256Gcm())

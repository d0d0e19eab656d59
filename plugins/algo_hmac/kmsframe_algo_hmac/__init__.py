"""``hmac-sha256``: HMAC (RFC 2104, FIPS 198-1) over SHA-256 MAC keys.

Keys are 32 random bytes from the HSM's generator; tags are the full 32
bytes (no truncation) and are compared in constant time. HMAC-SM3 lives with
the other national algorithms in ``algo_sm4``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, hmac

import kmsframe
from kmsframe.errors import InvalidRequest, OperationNotAllowed
from kmsframe.model import Operation, Purpose
from kmsframe.secrets import KeyMaterial, constant_time_equal

KEY_SIZE = 32


class HmacSha256Handle:
    __slots__ = ("_key",)

    def __init__(self, material: KeyMaterial) -> None:
        self._key = material.reveal()

    def __repr__(self) -> str:
        return "HmacSha256Handle(<key hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("key handles refuse to be pickled")

    def mac(self, message: bytes) -> bytes:
        h = hmac.HMAC(self._key, hashes.SHA256())
        h.update(message)
        return h.finalize()

    def verify(self, message: bytes, signature: bytes, options: Mapping[str, Any]) -> bool:
        """Check a MAC tag in constant time (``signature`` is the tag)."""
        return constant_time_equal(self.mac(message), signature)

    def encrypt(self, plaintext: bytes, aad: bytes) -> NoReturn:
        raise OperationNotAllowed("HMAC keys do not encrypt")

    def decrypt(self, ciphertext: bytes, aad: bytes) -> NoReturn:
        raise OperationNotAllowed("HMAC keys do not decrypt")

    def sign(self, message: bytes, options: Mapping[str, Any]) -> NoReturn:
        raise OperationNotAllowed("HMAC keys do not sign; use mac")

    def public_key_pem(self) -> None:
        return None


class HmacSha256:
    id = "hmac-sha256"
    purposes = frozenset({Purpose.MAC})
    key_size = KEY_SIZE
    data_key_size = None
    # Microseconds per call: served on the event loop (a thread hop costs more).
    slow_operations: frozenset[Operation] = frozenset()

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        return KeyMaterial(random_bytes(KEY_SIZE))

    def load(self, material: KeyMaterial) -> HmacSha256Handle:
        if len(material) != KEY_SIZE:
            raise InvalidRequest("hmac-sha256 keys are 32 bytes")
        return HmacSha256Handle(material)


@kmsframe.hookimpl
def kms_register_algorithms(register: Callable[[Any], None]) -> None:
    register(HmacSha256())

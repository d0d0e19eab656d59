"""Building blocks for algorithm plugins (the core itself registers none).

Plugins import only the core's public API, so what several algorithm plugins
would otherwise each write lives here: :class:`HmacAlgorithm` is a complete
MAC algorithm over any ``cryptography`` hash — ``algo_hmac`` makes
``hmac-sha256`` of it and ``algo_sm4`` makes ``hmac-sm3``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, hmac

from .errors import InvalidRequest, OperationNotAllowed
from .model import Operation, Purpose
from .secrets import KeyMaterial, constant_time_equal

HMAC_KEY_SIZE = 32


class HmacHandle:
    """A loaded HMAC key: full-length tags, verified in constant time."""

    __slots__ = ("_hash", "_key")

    def __init__(self, material: KeyMaterial, hash_algorithm: Callable[[], hashes.HashAlgorithm]
                 ) -> None:
        self._key = material.reveal()
        self._hash = hash_algorithm

    def __repr__(self) -> str:
        return f"HmacHandle({self._hash.__name__}, <key hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("key handles refuse to be pickled")

    def mac(self, message: bytes) -> bytes:
        h = hmac.HMAC(self._key, self._hash())
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


class HmacAlgorithm:
    """HMAC (RFC 2104) over ``hash_algorithm`` with 32-byte keys from the HSM's generator."""

    purposes = frozenset({Purpose.MAC})
    key_size = HMAC_KEY_SIZE
    data_key_size = None
    # Microseconds per call: served on the event loop (a thread hop costs more).
    slow_operations: frozenset[Operation] = frozenset()

    def __init__(self, algorithm_id: str,
                 hash_algorithm: Callable[[], hashes.HashAlgorithm]) -> None:
        self.id = algorithm_id
        self._hash = hash_algorithm

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        return KeyMaterial(random_bytes(HMAC_KEY_SIZE))

    def load(self, material: KeyMaterial) -> HmacHandle:
        if len(material) != HMAC_KEY_SIZE:
            raise InvalidRequest(f"{self.id} keys are {HMAC_KEY_SIZE} bytes")
        return HmacHandle(material, self._hash)

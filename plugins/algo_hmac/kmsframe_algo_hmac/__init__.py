"""``hmac-sha256``: HMAC (RFC 2104, FIPS 198-1) over SHA-256 MAC keys.

Keys are 32 random bytes from the HSM's generator; tags are the full 32
bytes (no truncation) and are compared in constant time. The algorithm is
the core's :class:`kmsframe.algorithm_kit.HmacAlgorithm`; HMAC-SM3 lives with
the other national algorithms in ``algo_sm4``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes

import kmsframe
from kmsframe.algorithm_kit import HmacAlgorithm


class HmacSha256(HmacAlgorithm):
    def __init__(self) -> None:
        super().__init__("hmac-sha256", hashes.SHA256)


@kmsframe.hookimpl
def kms_register_algorithms(register: Callable[[Any], None]) -> None:
    register(HmacSha256())

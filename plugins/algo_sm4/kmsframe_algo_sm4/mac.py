"""``hmac-sm3``: HMAC (RFC 2104) over SM3 with 32-byte keys; tags are 32 bytes."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

from kmsframe.algorithm_kit import HmacAlgorithm


class HmacSm3(HmacAlgorithm):
    def __init__(self) -> None:
        super().__init__("hmac-sm3", hashes.SM3)

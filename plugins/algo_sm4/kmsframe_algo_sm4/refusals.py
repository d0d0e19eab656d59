"""What a symmetric handle says to operations outside its purpose."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from kmsframe.errors import OperationNotAllowed


class EncryptOnly:
    """Mixin for encryption handles: no signatures, no MACs, no public key."""

    __slots__ = ()

    def sign(self, message: bytes, options: Mapping[str, Any]) -> NoReturn:
        raise OperationNotAllowed("SM4 keys do not sign")

    def verify(self, message: bytes, signature: bytes, options: Mapping[str, Any]) -> NoReturn:
        raise OperationNotAllowed("SM4 keys do not verify signatures")

    def mac(self, message: bytes) -> NoReturn:
        raise OperationNotAllowed("SM4 encryption keys do not compute MACs")

    def public_key_pem(self) -> None:
        return None

    def __reduce__(self) -> NoReturn:
        raise TypeError("key handles refuse to be pickled")

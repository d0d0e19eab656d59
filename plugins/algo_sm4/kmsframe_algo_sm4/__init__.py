"""The Chinese national symmetric algorithms: ``sm4-gcm``, ``sm4-cbc-hmac-sm3``, ``hmac-sm3``.

* ``sm4-gcm`` (default for SM deployments) — SM4 (GB/T 32907) in GCM mode as in
  RFC 8998; see :mod:`.gcm`.
* ``sm4-cbc-hmac-sm3`` — SM4-CBC then HMAC-SM3 over the result
  (encrypt-then-MAC) for systems that need CBC; see :mod:`.cbc_hmac`.
* ``hmac-sm3`` — HMAC (RFC 2104) with SM3 (GB/T 32905) MAC keys; see :mod:`.mac`.

All are thin wrappers over ``cryptography`` (OpenSSL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kmsframe

from .cbc_hmac import Sm4CbcHmacSm3
from .gcm import Sm4Gcm
from .mac import HmacSm3
from .sm3 import sm3

__all__ = ["HmacSm3", "Sm4CbcHmacSm3", "Sm4Gcm", "sm3"]


@kmsframe.hookimpl
def kms_register_algorithms(register: Callable[[Any], None]) -> None:
    register(Sm4Gcm())
    register(Sm4CbcHmacSm3())
    register(HmacSm3())

"""kmsframe plugin: master keys in PKCS#11 HSMs (tested on SoftHSM2).

Registers the HSM backend ``pkcs11``. Settings are described in
:mod:`kmsframe_hsm_pkcs11.settings`, the wrapped-key format in
:mod:`kmsframe_hsm_pkcs11.blobs`, custodian shares in
:mod:`kmsframe_hsm_pkcs11.shares`; ``docs/hsm.md`` explains the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kmsframe

from .backend import BACKEND_ID, Pkcs11Hsm
from .settings import parse


def build(settings: Mapping[str, Any]) -> Pkcs11Hsm:
    """Factory for ``[hsm] backend = "pkcs11"``; touches no device."""
    return Pkcs11Hsm(parse(settings))


@kmsframe.hookimpl
def kms_register_hsm_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(BACKEND_ID, build)


__all__ = ["BACKEND_ID", "Pkcs11Hsm", "build"]

"""Export of a working-key version, wrapped to a named recipient's public key.

Only an approved ``keys.export`` request calls this (see
:mod:`kmsframe.approvals`); the material is never returned in the clear.
The recipient's RSA public key (2048 bits or more) wraps a fresh 256-bit
content key with RSA-OAEP (SHA-256, MGF1-SHA-256); the content key encrypts
the working key with AES-256-GCM, whose associated data is the canonical
JSON of the header, so no header field can be altered. Document::

    {"format": "kmsframe-key-export/1", "enc": "RSA-OAEP-256+A256GCM",
     "key": name, "key_id": ..., "version": 10002, "algorithm": "aes-256-gcm",
     "purpose": "encrypt", "recipient": "dr-site",
     "recipient_key_sha256": hex(SHA-256(DER SubjectPublicKeyInfo)),
     "encrypted_key": b64, "iv": b64(12 bytes), "ciphertext": b64(ct || tag)}

The header is every field but ``encrypted_key``, ``iv`` and ``ciphertext``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import ciphertext as ct
from .errors import DecryptionFailed, InvalidRequest, VersionNotUsable
from .model import VersionState
from .providers import HsmBackend
from .secrets import KeyMaterial

EXPORT_FORMAT = "kmsframe-key-export/1"
ENC = "RSA-OAEP-256+A256GCM"
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_BODY = ("encrypted_key", "iv", "ciphertext")


def recipient_key(pem: str) -> rsa.RSAPublicKey:
    """Parse and check a recipient's public key (RSA, 2048 bits or more)."""
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, AttributeError, UnicodeError):
        raise InvalidRequest("the recipient public key is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise InvalidRequest("the recipient key must be an RSA key of 2048 bits or more")
    return key


def fingerprint(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _aad(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def export_version(hsm: HsmBackend, key: Any, version: int, recipient: str,
                   public_key_pem: str) -> dict[str, Any]:
    """Wrap ``key``'s ``version`` for ``recipient``; the clear material stays here."""
    public = recipient_key(public_key_pem)
    v = key.version(version)
    if v is None or v.wrapped is None or v.state in (VersionState.DESTROYED,
                                                      VersionState.COMPROMISED):
        raise VersionNotUsable(f"version {version} of key {key.name!r} cannot be exported")
    material = hsm.unwrap(v.wrapped, ct.wrap_aad(key.id, version, key.algorithm,
                                                 key.purpose.value))
    header = {"format": EXPORT_FORMAT, "enc": ENC, "key": key.name, "key_id": key.id,
              "version": version, "algorithm": key.algorithm, "purpose": key.purpose.value,
              "recipient": recipient, "recipient_key_sha256": fingerprint(public)}
    cek = AESGCM.generate_key(bit_length=256)
    iv = os.urandom(12)
    body = AESGCM(cek).encrypt(iv, material.reveal(), _aad(header))
    return {**header,
            "encrypted_key": base64.b64encode(public.encrypt(cek, _OAEP)).decode("ascii"),
            "iv": base64.b64encode(iv).decode("ascii"),
            "ciphertext": base64.b64encode(body).decode("ascii")}


def open_export(document: Mapping[str, Any], private_key: rsa.RSAPrivateKey) -> KeyMaterial:
    """The recipient's side: check and open an export document."""
    if document.get("format") != EXPORT_FORMAT or document.get("enc") != ENC:
        raise InvalidRequest("not a kmsframe key export document")
    header = {k: v for k, v in document.items() if k not in _BODY}
    try:
        cek = private_key.decrypt(base64.b64decode(document["encrypted_key"]), _OAEP)
        material = AESGCM(cek).decrypt(base64.b64decode(document["iv"]),
                                       base64.b64decode(document["ciphertext"]), _aad(header))
    except (KeyError, ValueError, InvalidTag):
        raise DecryptionFailed() from None
    return KeyMaterial(material)

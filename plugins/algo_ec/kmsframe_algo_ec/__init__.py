"""Elliptic-curve signing keys: ``ed25519`` (RFC 8032) and ``ecdsa-p256`` (FIPS 186-5, SHA-256).

Private keys are kept as unencrypted PKCS#8 DER — that is the key material
the HSM wraps; it exists in the clear only in memory. Public keys are exported
as SubjectPublicKeyInfo PEM, which ``openssl`` and every TLS stack read.

* ``ed25519``: signatures are the raw 64 bytes of RFC 8032 (what
  ``openssl pkeyutl -sign -rawin`` produces). Private keys are 32 seed bytes
  from the HSM's generator.
* ``ecdsa-p256``: ECDSA over P-256 with SHA-256, signatures DER
  ``SEQUENCE { r, s }`` (what ``openssl dgst -sha256 -sign`` produces).
  The private scalar is drawn from the HSM's generator: 40 bytes reduced into
  ``[1, n-1]`` (bias below 2**-64, as in FIPS 186-5 A.2.1).

Verification answers True or False and never raises for a bad signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import kmsframe
from kmsframe.errors import InvalidRequest, OperationNotAllowed
from kmsframe.model import Operation, Purpose
from kmsframe.secrets import KeyMaterial

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _pkcs8(private_key: Any) -> KeyMaterial:
    return KeyMaterial(private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def _spki_pem(public_key: Any) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _no_options(options: Mapping[str, Any], algorithm: str) -> None:
    if options:
        raise InvalidRequest(f"{algorithm} signatures take no options (got {sorted(options)})")


def _load_pkcs8(material: KeyMaterial, kind: type, algorithm: str) -> Any:
    try:
        key = serialization.load_der_private_key(material.reveal(), password=None)
    except (ValueError, TypeError):
        raise InvalidRequest(f"the key material is not a {algorithm} PKCS#8 key") from None
    if not isinstance(key, kind):
        raise InvalidRequest(f"the key material is not a {algorithm} PKCS#8 key")
    return key


def verify_ed25519(public_key: ed25519.Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """RFC 8032 verification; False for any bad or malformed signature."""
    try:
        public_key.verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_ecdsa_p256(public_key: ec.EllipticCurvePublicKey, message: bytes,
                      signature: bytes) -> bool:
    """ECDSA-SHA256 verification of a DER signature; False for anything else."""
    try:
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class _SigningHandle:
    __slots__ = ("_private", "_public", "_name")

    def __init__(self, private: Any, name: str) -> None:
        self._private = private
        self._public = private.public_key()
        self._name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<key hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("key handles refuse to be pickled")

    def encrypt(self, plaintext: bytes, aad: bytes) -> NoReturn:
        raise OperationNotAllowed(f"{self._name} keys do not encrypt")

    def decrypt(self, ciphertext: bytes, aad: bytes) -> NoReturn:
        raise OperationNotAllowed(f"{self._name} keys do not decrypt")

    def mac(self, message: bytes) -> NoReturn:
        raise OperationNotAllowed(f"{self._name} keys do not compute MACs; use sign")

    def public_key_pem(self) -> str:
        return _spki_pem(self._public)


class Ed25519Handle(_SigningHandle):
    __slots__ = ()

    def sign(self, message: bytes, options: Mapping[str, Any]) -> bytes:
        _no_options(options, "ed25519")
        return self._private.sign(message)

    def verify(self, message: bytes, signature: bytes, options: Mapping[str, Any]) -> bool:
        _no_options(options, "ed25519")
        return verify_ed25519(self._public, message, signature)


class EcdsaP256Handle(_SigningHandle):
    __slots__ = ()

    def sign(self, message: bytes, options: Mapping[str, Any]) -> bytes:
        _no_options(options, "ecdsa-p256")
        return self._private.sign(message, ec.ECDSA(hashes.SHA256()))

    def verify(self, message: bytes, signature: bytes, options: Mapping[str, Any]) -> bool:
        _no_options(options, "ecdsa-p256")
        return verify_ecdsa_p256(self._public, message, signature)


class Ed25519:
    id = "ed25519"
    purposes = frozenset({Purpose.SIGN})
    data_key_size = None
    # 20 to 90 µs per call (sign ~25, verify ~80): one call is cheaper on the
    # event loop than the thread hop. Batches still go to the pool (the core
    # sends every public-key batch there): 1,000 items would hold the loop 0.1 s.
    slow_operations: frozenset[Operation] = frozenset()

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        return _pkcs8(ed25519.Ed25519PrivateKey.from_private_bytes(random_bytes(32)))

    def load(self, material: KeyMaterial) -> Ed25519Handle:
        return Ed25519Handle(_load_pkcs8(material, ed25519.Ed25519PrivateKey, "ed25519"),
                             "ed25519")


class EcdsaP256:
    id = "ecdsa-p256"
    purposes = frozenset({Purpose.SIGN})
    data_key_size = None
    # 20 to 90 µs per call (sign ~25, verify ~80): one call is cheaper on the
    # event loop than the thread hop. Batches still go to the pool (the core
    # sends every public-key batch there): 1,000 items would hold the loop 0.1 s.
    slow_operations: frozenset[Operation] = frozenset()

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        scalar = int.from_bytes(random_bytes(40), "big") % (P256_ORDER - 1) + 1
        return _pkcs8(ec.derive_private_key(scalar, ec.SECP256R1()))

    def load(self, material: KeyMaterial) -> EcdsaP256Handle:
        key = _load_pkcs8(material, ec.EllipticCurvePrivateKey, "ecdsa-p256")
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidRequest("the key material is not a P-256 key")
        return EcdsaP256Handle(key, "ecdsa-p256")


@kmsframe.hookimpl
def kms_register_algorithms(register: Callable[[Any], None]) -> None:
    register(Ed25519())
    register(EcdsaP256())

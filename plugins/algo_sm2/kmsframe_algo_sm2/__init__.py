"""``sm2``: SM2 signatures and encryption (GM/T 0003 / GB/T 32918) on GmSSL.

A thin wrapper over ``gmssl-pyx``, a C extension with GmSSL 3.2 built in —
never the pure-Python ``gmssl`` package, whose nonces come from a non-CSPRNG
and whose decryption skips the C3 check.

One algorithm id, two purposes: a key is created *either* for ``sign`` or for
``encrypt`` and the core enforces that (the purpose is also bound into the
wrapped key's associated data, so it cannot be switched later).

* **Signatures**: SM2 with SM3 over ``Z_A || M`` where ``Z_A`` hashes the
  signer's distinguishing ID — by default ``1234567812345678`` (GM/T 0009),
  overridable per call with the option ``{"distinguishing_id": "<text>"}``
  (UTF-8, at most 8191 bytes; the verifier must use the same one). Signatures
  are DER ``SEQUENCE { r, s }``, as ``openssl pkeyutl -sign -digest sm3
  -pkeyopt distid:1234567812345678`` makes and checks them.
* **Encryption**: to the public key, output DER ``SEQUENCE { x, y, C3 hash,
  C2 ciphertext }`` — the C1C3C2 order of GM/T 0009 §7.2, which is also what
  ``openssl pkeyutl -encrypt`` writes. Plaintexts are 1 to 255 bytes (GmSSL's
  limit; enough for passwords and data keys). SM2 encryption has no
  associated data, so ``binds_aad = False``.

Key material is PKCS#8 DER including the public key (see :mod:`.encoding`);
public keys are SubjectPublicKeyInfo PEM. Key pairs come from GmSSL's
generator (the OS CSPRNG): the binding has no call to derive the public point
from a scalar drawn elsewhere. Every loaded key pair is checked once by a
sign-and-verify, so a mismatched public key is refused at load.

GmSSL prints ``file.c:line:function():`` to the process's stderr for every input
it rejects (compiled in: ``#define DEBUG 1`` in gmssl/error.h; the binding has no
switch, and redirecting file descriptor 2 around a call would swallow other
threads' output). :func:`plausible_signature` and :func:`plausible_ciphertext`
refuse malformed input first, silently; only a well-formed signature that does
not verify, or a well-formed ciphertext whose C3 does not match, still reaches
GmSSL's arithmetic and prints two lines.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import gmssl_pyx

import kmsframe
from kmsframe.errors import DecryptionFailed, InvalidRequest, OperationNotAllowed
from kmsframe.model import Operation, Purpose
from kmsframe.secrets import KeyMaterial

from . import encoding

DEFAULT_DISTINGUISHING_ID = b"1234567812345678"
# sm2p256v1 curve parameters a, b and the base point G (GM/T 0003.5-2012 §3),
# as they enter Z_A.
_CURVE_A_B_G = bytes.fromhex(
    "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC"
    "28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93"
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
# sm2p256v1: field prime p, curve coefficients a and b, group order n (GM/T 0003.5 §3).
_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
_A = _P - 3
_B = int("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93", 16)
_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
MAX_DISTINGUISHING_ID = 8191  # ENTL is a 16-bit count of bits
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 255
_OPTIONS = frozenset({"distinguishing_id"})


def distinguishing_id(options: Mapping[str, Any]) -> bytes:
    """The signer's ID from per-call options (the default when not given)."""
    unknown = set(options) - _OPTIONS
    if unknown:
        raise InvalidRequest(f"unknown SM2 signature options: {', '.join(sorted(unknown))}")
    value = options.get("distinguishing_id")
    if value is None:
        return DEFAULT_DISTINGUISHING_ID
    if not isinstance(value, str) or not value:
        raise InvalidRequest("distinguishing_id must be a non-empty string")
    raw = value.encode("utf-8")
    if len(raw) > MAX_DISTINGUISHING_ID:
        raise InvalidRequest(f"distinguishing_id is at most {MAX_DISTINGUISHING_ID} bytes")
    return raw


def z_value(public: bytes, signer_id: bytes) -> bytes:
    """``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)`` (GM/T 0003.2 §5.5).

    Computed here, and cached per key for the default ID, because the
    binding's all-in-one ``sm2_sign`` redoes costly key set-up on every call
    (about 2.5 ms against 0.25 ms for signing the digest).
    """
    return gmssl_pyx.sm3_hash(struct.pack(">H", len(signer_id) * 8) + signer_id
                              + _CURVE_A_B_G + public)


def plausible_signature(signature: bytes) -> bool:
    """Whether ``signature`` is strict DER of ``(r, s)`` with ``1 <= r, s < n`` and
    ``r + s != n``: everything GmSSL checks before the curve arithmetic, done here
    so that a malformed signature is refused without GmSSL's stderr trace."""
    if len(signature) > 80:  # DER of two 256-bit integers is at most 72 bytes
        return False
    try:
        r, s = encoding.parse_signature(signature)
    except encoding.DerError:
        return False
    return 0 < r < _N and 0 < s < _N and (r + s) % _N != 0


def plausible_ciphertext(ciphertext: bytes) -> bool:
    """Whether ``ciphertext`` is strict C1C3C2 DER whose C1 is a point on the
    curve, with a 32-byte C3 and 1 to 255 bytes of C2 — what GmSSL checks
    before deriving the key (silently here, see :func:`plausible_signature`)."""
    try:
        x, y, c3, c2 = encoding.parse_ciphertext(ciphertext)
    except encoding.DerError:
        return False
    return (x < _P and y < _P and (y * y - (x * x * x + _A * x + _B)) % _P == 0
            and len(c3) == 32 and MIN_PLAINTEXT <= len(c2) <= MAX_PLAINTEXT)


def verify_signature(public: bytes, message: bytes, signature: bytes,
                     signer_id: bytes = DEFAULT_DISTINGUISHING_ID,
                     z: bytes | None = None) -> bool:
    """SM2-SM3 verification of a DER signature by a raw 64-byte public key."""
    if not plausible_signature(signature):
        return False
    if z is None:
        z = z_value(public, signer_id)
    try:
        digest = gmssl_pyx.sm3_hash(z + message)
        return bool(gmssl_pyx.sm2_verify_sm3_digest(public, digest, signature))
    except Exception:  # noqa: BLE001 - any malformed signature is simply not valid
        return False


def decrypt(private: bytes, ciphertext: bytes) -> bytes:
    """Open C1C3C2 DER ciphertext; every failure is the same :class:`DecryptionFailed`."""
    if not plausible_ciphertext(ciphertext):
        raise DecryptionFailed()
    try:
        return gmssl_pyx.sm2_decrypt(private, ciphertext)
    except Exception:  # noqa: BLE001 - a decryption failure never says why
        raise DecryptionFailed() from None


def encrypt(public: bytes, plaintext: bytes) -> bytes:
    """C1C3C2 DER ciphertext of ``plaintext`` to a raw 64-byte public key."""
    if not MIN_PLAINTEXT <= len(plaintext) <= MAX_PLAINTEXT:
        raise InvalidRequest(
            f"SM2 encrypts {MIN_PLAINTEXT} to {MAX_PLAINTEXT} bytes; "
            "use a symmetric key or a data key for more")
    return gmssl_pyx.sm2_encrypt(public, plaintext)


class Sm2Handle:
    __slots__ = ("_private", "_public", "_default_z")

    def __init__(self, private: bytes, public: bytes) -> None:
        self._private = private
        self._public = public
        self._default_z = z_value(public, DEFAULT_DISTINGUISHING_ID)

    def _z(self, options: Mapping[str, Any]) -> bytes:
        signer_id = distinguishing_id(options)
        if signer_id == DEFAULT_DISTINGUISHING_ID:
            return self._default_z
        return z_value(self._public, signer_id)

    def __repr__(self) -> str:
        return "Sm2Handle(<key hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("key handles refuse to be pickled")

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return encrypt(self._public, plaintext)

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        return decrypt(self._private, ciphertext)

    def sign(self, message: bytes, options: Mapping[str, Any]) -> bytes:
        digest = gmssl_pyx.sm3_hash(self._z(options) + message)
        return gmssl_pyx.sm2_sign_sm3_digest(self._private, digest)

    def verify(self, message: bytes, signature: bytes, options: Mapping[str, Any]) -> bool:
        return verify_signature(self._public, message, signature, z=self._z(options))

    def mac(self, message: bytes) -> NoReturn:
        raise OperationNotAllowed("SM2 keys do not compute MACs")

    def public_key_pem(self) -> str:
        return encoding.public_key_pem(self._public)


class Sm2:
    id = "sm2"
    purposes = frozenset({Purpose.SIGN, Purpose.ENCRYPT})
    binds_aad = False
    data_key_size = None
    min_plaintext_size = MIN_PLAINTEXT
    max_plaintext_size = MAX_PLAINTEXT
    # 0.3 to 0.7 ms per call, all of it holding the GIL (GmSSL's binding does not
    # release it): in a thread the event loop still gets its turn between calls.
    slow_operations = frozenset(Operation)

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial:
        public, private = gmssl_pyx.sm2_key_generate()
        return KeyMaterial(encoding.private_key_der(private, public))

    def load(self, material: KeyMaterial) -> Sm2Handle:
        try:
            private, public = encoding.parse_private_key_der(material.reveal())
            gmssl_pyx.normalize_sm2_public_key(public)  # on the curve?
        except (encoding.DerError, gmssl_pyx.InvalidValueError):
            raise InvalidRequest("the key material is not an SM2 PKCS#8 key") from None
        handle = Sm2Handle(private, public)
        probe = b"kmsframe sm2 pairwise consistency"
        # Checked with the binding's own all-in-one verify, independent of z_value.
        if not gmssl_pyx.sm2_verify(public, probe, handle.sign(probe, {}),
                                    DEFAULT_DISTINGUISHING_ID):
            raise InvalidRequest("the SM2 private and public keys do not match")
        return handle


@kmsframe.hookimpl
def kms_register_algorithms(register: Callable[[Any], None]) -> None:
    register(Sm2())

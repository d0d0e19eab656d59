"""The typed error hierarchy of kmsframe.

Every error a caller can see carries a stable machine-readable ``code`` and a
human ``message`` that is safe to show to the caller. Errors know nothing of
HTTP: the transport maps classes to statuses in one place
(``kmsframe.http.errors``). ``log_detail`` is for operators' logs only and never
leaves the process; it must never contain key material either.
"""

from __future__ import annotations


class KmsError(Exception):
    """Base of every error kmsframe reports to a caller."""

    code: str = "internal_error"
    default_message: str = "internal error"

    def __init__(self, message: str | None = None, *, log_detail: str | None = None) -> None:
        self.message = message or self.default_message
        self.log_detail = log_detail
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


# -- caller mistakes ---------------------------------------------------------


class InvalidRequest(KmsError):
    """The request is malformed or a parameter is out of range."""

    code = "invalid_request"
    default_message = "the request is invalid"


class InvalidCiphertext(InvalidRequest):
    """The ciphertext is not in kmsframe's format (bad prefix or base64).

    Only raised for *syntax*; a well-formed ciphertext that does not open is a
    :class:`DecryptionFailed`, which never says why.
    """

    code = "invalid_ciphertext"
    default_message = "the ciphertext is not in the expected format"


class UnsupportedAlgorithm(InvalidRequest):
    code = "unsupported_algorithm"
    default_message = "the algorithm is not supported by this deployment"


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    default_message = "the payload is too large"


class OperationNotAllowed(KmsError):
    """The key cannot do this: wrong purpose, disabled key, retired version..."""

    code = "operation_not_allowed"
    default_message = "the key does not allow this operation"


class KeyDisabled(OperationNotAllowed):
    code = "key_disabled"
    default_message = "the key is disabled"


class KeyPendingDeletion(OperationNotAllowed):
    code = "key_pending_deletion"
    default_message = "the key is scheduled for deletion"


class VersionNotUsable(OperationNotAllowed):
    """The version exists but its state forbids this operation."""

    code = "version_not_usable"
    default_message = "the key version cannot be used for this operation"


class InvalidStateTransition(OperationNotAllowed):
    code = "invalid_state_transition"
    default_message = "the key or version cannot move to that state"


class DecryptionFailed(KmsError):
    """A well-formed ciphertext did not open. Deliberately says nothing more."""

    code = "decryption_failed"
    default_message = "decryption failed"


# -- identity and permission -------------------------------------------------


class Unauthenticated(KmsError):
    code = "unauthenticated"
    default_message = "authentication is required"


class PermissionDenied(KmsError):
    code = "permission_denied"
    default_message = "permission denied"


class RateLimited(KmsError):
    code = "rate_limited"
    default_message = "too many requests"


# -- things that are not there, or already there -----------------------------


class NotFound(KmsError):
    code = "not_found"
    default_message = "not found"


class KeyNotFound(NotFound):
    code = "key_not_found"
    default_message = "no such key"


class VersionNotFound(NotFound):
    code = "version_not_found"
    default_message = "no such key version"


class Conflict(KmsError):
    code = "conflict"
    default_message = "the request conflicts with the current state"


class AlreadyExists(Conflict):
    code = "already_exists"
    default_message = "it already exists"


class ConcurrentModification(Conflict):
    """An optimistic write lost a race; the caller (or the core) may retry."""

    code = "concurrent_modification"
    default_message = "the record was changed concurrently; retry"


# -- the deployment itself ---------------------------------------------------


class ConfigurationError(KmsError):
    """The deployment's configuration is wrong; raised at startup."""

    code = "configuration_error"
    default_message = "the deployment is misconfigured"


class PluginError(ConfigurationError):
    code = "plugin_error"
    default_message = "a plugin could not be loaded"


class Unavailable(KmsError):
    """A dependency (storage, HSM, audit sink) cannot serve right now."""

    code = "unavailable"
    default_message = "the service is temporarily unavailable"


class HsmSealed(Unavailable):
    code = "hsm_sealed"
    default_message = "the HSM is sealed"


class StorageUnavailable(Unavailable):
    code = "storage_unavailable"
    default_message = "the key store is unavailable"


class IntegrityError(KmsError):
    """Stored data failed an integrity check (tampering or corruption)."""

    code = "integrity_error"
    default_message = "stored data failed an integrity check"

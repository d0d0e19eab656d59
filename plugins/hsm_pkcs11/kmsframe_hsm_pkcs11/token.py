"""One PKCS#11 token: a long-lived logged-in session and the master keys in it.

A :class:`Token` keeps one read/write session, logged in as the user, for the
life of the process, and finds master keys by label and id. Every call holds
the library's lock (see :mod:`.library`). When a call fails because the token
or the library did (not because of bad data), the token is marked down with
the reason; the next use after ``retry_seconds`` reconnects: a new session,
and if that fails too a re-initialised library.

Objects in the token::

    secret key  CKA_LABEL=<key_label> CKA_ID=<master key id>   the master keys
    data        CKA_LABEL=<key_label>.current CKA_VALUE=<id>    which one wraps
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams

from kmsframe.errors import ConfigurationError, IntegrityError
from kmsframe.secrets import KeyMaterial

from . import blobs
from .library import Library, load
from .settings import TokenSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors that say "this input does not open", not "the token is broken".
DATA_ERRORS: tuple[type[Exception], ...] = (
    p11.EncryptedDataInvalid, p11.EncryptedDataLenRange, p11.WrappedKeyInvalid,
    p11.WrappedKeyLenRange, p11.DataInvalid, p11.DataLenRange, p11.MechanismParamInvalid,
    p11.ArgumentsBad,
)
# Errors that a wrong configuration causes; retrying will not help.
CONFIG_ERRORS: tuple[type[Exception], ...] = (
    p11.PinIncorrect, p11.PinLocked, p11.PinExpired, p11.PinInvalid, p11.PinLenRange,
    p11.UserPinNotInitialized, p11.MultipleTokensReturned,
)

MECHANISM_OF = {blobs.SCHEME_GCM: Mechanism.AES_GCM, blobs.SCHEME_KWP: Mechanism.AES_KEY_WRAP_PAD}
CAPABILITIES_OF = {
    blobs.SCHEME_GCM: MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
    blobs.SCHEME_KWP: MechanismFlag.WRAP | MechanismFlag.UNWRAP,
}
_CAPABILITY_ATTRIBUTES = {
    MechanismFlag.ENCRYPT: Attribute.ENCRYPT, MechanismFlag.DECRYPT: Attribute.DECRYPT,
    MechanismFlag.WRAP: Attribute.WRAP, MechanismFlag.UNWRAP: Attribute.UNWRAP,
}
# Every master key, however made: private, sensitive, never readable.
MASTER_KEY_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}
# A working key on its way in or out: a session object, destroyed at once.
_TRANSIT_TEMPLATE = {
    Attribute.TOKEN: False,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
}


class TokenDown(Exception):
    """The token (or its library) failed; try another one."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"token {label!r} is unavailable: {reason}")
        self.label = label
        self.reason = reason


class MasterKeyMissing(TokenDown):
    """The token works but does not hold the master key asked for."""


class Token:
    def __init__(self, spec: TokenSpec, *, key_label: str, retry_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.label = spec.label
        self.key_label = key_label
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.library: Library | None = None
        self._session: Any = None
        self._generation = -1
        self._keys: dict[str, Any] = {}
        self._schemes: dict[str, int] = {}
        self.error: str | None = "not opened"
        self._failed_at: float | None = None
        # A login refused (wrong or locked PIN) is never retried on its own:
        # each retry would spend one of the token's PIN attempts.
        self._refused: str | None = None
        self.mechanisms: frozenset[int] = frozenset()
        self.hardware = False
        self.model = ""

    def __repr__(self) -> str:
        return f"Token(label={self.label!r}, module={self.spec.module!r}, up={self.up})"

    # -- connection -----------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.error is None and self._session is not None

    def connect(self) -> None:
        """Load the module, find the token by label, open a session and log in.

        A wrong PIN or an unknown label raises ConfigurationError; a token
        that is absent or broken raises TokenDown.
        """
        if self.library is None:
            self.library = load(self.spec.module, self.spec.module_env)
        lib = self.library
        with lib.lock:
            self._drop_session()
            try:
                token = lib.handle.get_token(token_label=self.label)
                try:
                    session = token.open(rw=True, user_pin=self.spec.pin.reveal_text())
                except p11.UserAlreadyLoggedIn:
                    # Login state belongs to the application: another backend
                    # in this process is logged in to the same token already.
                    session = token.open(rw=True)
                self.mechanisms = frozenset(int(m) for m in token.slot.get_mechanisms())
                # SoftHSM2 is a software token: its slot does not claim CKF_HW_SLOT.
                self.hardware = bool(token.slot.flags & pkcs11.SlotFlag.HW_SLOT)
                self.model = f"{token.manufacturer_id} {token.model}".strip()
            except p11.NoSuchToken:
                self._mark_down(NO_SUCH_TOKEN)
                raise TokenDown(self.label, NO_SUCH_TOKEN) from None
            except CONFIG_ERRORS as exc:
                self._mark_down(type(exc).__name__)
                self._refused = type(exc).__name__
                raise ConfigurationError(
                    f"hsm: cannot log in to token {self.label!r}: {type(exc).__name__}") from None
            except pkcs11.PKCS11Error as exc:
                self._mark_down(_reason(exc))
                raise TokenDown(self.label, _reason(exc)) from None
            self._session = session
            self._refused = None
            self._generation = lib.generation
            self._keys.clear()
            self.error = None
            self._failed_at = None

    def close(self) -> None:
        if self.library is None:
            return
        with self.library.lock:
            self._drop_session()
            self.error = "closed"

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        self._keys.clear()
        if session is not None:
            try:
                session.close()
            except pkcs11.PKCS11Error:
                pass

    def _mark_down(self, reason: str) -> None:
        if self.error is None:
            log.error("HSM token %r failed: %s", self.label, reason)
        self.error = reason
        self._failed_at = self.clock()

    def _ensure(self) -> Any:
        """The live session, reconnecting if the token was down long enough."""
        if self.up and self.library is not None and self._generation == self.library.generation:
            return self._session
        if self._refused is not None:
            raise TokenDown(self.label, f"login refused ({self._refused}); fix and restart")
        if self._failed_at is not None and self.clock() - self._failed_at < self.retry_seconds:
            raise TokenDown(self.label, self.error or "down")
        try:
            self.connect()
        except ConfigurationError:
            raise TokenDown(self.label, f"login refused ({self._refused}); fix and restart") \
                from None
        except TokenDown as exc:
            # The library itself was finalized (by a reset, or another user in
            # this process): re-initialise it once. Any other failure waits for
            # the next retry; re-initialising would cut every other token's session.
            if self.library is None or exc.reason != NOT_INITIALIZED:
                raise
            try:
                self.library.reinitialize()
            except pkcs11.PKCS11Error as exc:
                self._mark_down(f"library re-initialise failed: {type(exc).__name__}")
                raise TokenDown(self.label, self.error or "down") from None
            self.connect()
        log.warning("HSM token %r reconnected", self.label)
        return self._session

    def call(self, work: Callable[[Any], T], *,
             bad_data_check: Callable[[Any], bool] | None = None) -> T:
        """Run ``work(session)`` under the library lock.

        Token or library failures mark the token down and raise TokenDown.
        ``bad_data_check(session)`` tells an error that means "this blob does
        not open" from a broken token (SoftHSM2 reports a failed GCM tag as
        CKR_GENERAL_ERROR): if it passes, the token is fine and the data was
        bad (IntegrityError); if it fails, the token is down.
        """
        if self.library is None:
            self.connect()
        assert self.library is not None
        with self.library.lock:
            session = self._ensure()
            try:
                return work(session)
            except IntegrityError:
                raise
            except DATA_ERRORS:
                if bad_data_check is not None:
                    raise IntegrityError(log_detail="a wrapped key failed to unwrap") from None
                raise
            except pkcs11.PKCS11Error as exc:
                if bad_data_check is not None and _passes(bad_data_check, session):
                    raise IntegrityError(log_detail="a wrapped key failed to unwrap") from None
                reason = _reason(exc)
                self._mark_down(reason)
                self._drop_session()
                raise TokenDown(self.label, reason) from None

    def probe(self, mk_id: str | None = None) -> bool:
        """A live check for status(): a random request, and if ``mk_id`` is
        given, a wrap/unwrap round trip under that master key (a token whose
        key objects vanished still answers random requests)."""
        try:
            if mk_id is None:
                self.call(lambda s: s.generate_random(64))
            else:
                self.call(lambda s: self._self_test(s, mk_id))
            return True
        except (TokenDown, ConfigurationError, IntegrityError):
            return False

    def _self_test(self, session: Any, mk_id: str) -> bool:
        mk = self._find_key(session, mk_id)
        if mk is None:
            raise MasterKeyMissing(self.label, f"master key {mk_id} is not in this token")
        if mk[Attribute.ENCRYPT]:
            nonce = bytes(session.generate_random(96))
            sealed = mk.encrypt(bytes(32), mechanism=Mechanism.AES_GCM,
                                mechanism_param=GCMParams(nonce, b"probe", 128))
            mk.decrypt(sealed, mechanism=Mechanism.AES_GCM,
                       mechanism_param=GCMParams(nonce, b"probe", 128))
        else:
            transit = session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.VALUE: bytes(32), **_TRANSIT_TEMPLATE})
            try:
                mk.wrap_key(transit, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            finally:
                transit.destroy()
        return True

    # -- master keys ------------------------------------------------------------

    def _find_key(self, session: Any, mk_id: str) -> Any | None:
        found = self._keys.get(mk_id)
        if found is not None:
            return found
        objects = list(session.get_objects({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: self.key_label,
            Attribute.ID: mk_id.encode("ascii")}))
        if not objects:
            return None
        self._keys[mk_id] = objects[0]
        return objects[0]

    def has_master_key(self, mk_id: str) -> bool:
        return self.call(lambda s: self._find_key(s, mk_id) is not None)

    def master_keys(self) -> list[dict[str, Any]]:
        """Every master key object with its security attributes (no values)."""
        def work(session: Any) -> list[dict[str, Any]]:
            out = []
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                            Attribute.LABEL: self.key_label}):
                out.append({
                    "id": bytes(obj[Attribute.ID]).decode("ascii", "replace"),
                    "sensitive": bool(obj[Attribute.SENSITIVE]),
                    "extractable": bool(obj[Attribute.EXTRACTABLE]),
                    "local": bool(obj[Attribute.LOCAL]),
                    "never_extractable": bool(obj[Attribute.NEVER_EXTRACTABLE]),
                    "always_sensitive": bool(obj[Attribute.ALWAYS_SENSITIVE]),
                })
            return sorted(out, key=lambda k: k["id"])
        return self.call(work)

    def current(self) -> str | None:
        """The id in this token's ``<key_label>.current`` pointer, if any."""
        def work(session: Any) -> str | None:
            objects = list(session.get_objects({Attribute.CLASS: ObjectClass.DATA,
                                                Attribute.LABEL: self.key_label + ".current"}))
            if not objects:
                return None
            return bytes(objects[0][Attribute.VALUE]).decode("ascii")
        return self.call(work)

    def set_current(self, mk_id: str) -> None:
        def work(session: Any) -> None:
            if self._find_key(session, mk_id) is None:
                raise IntegrityError(log_detail=f"token {self.label} lacks master key {mk_id}")
            old = list(session.get_objects({Attribute.CLASS: ObjectClass.DATA,
                                            Attribute.LABEL: self.key_label + ".current"}))
            # Create the new pointer before removing the old one: a crash in
            # between leaves two, and current() then reads either, both valid keys.
            session.create_object({
                Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                Attribute.PRIVATE: True, Attribute.LABEL: self.key_label + ".current",
                Attribute.APPLICATION: "kmsframe", Attribute.VALUE: mk_id.encode("ascii"),
            })
            for obj in old:
                obj.destroy()
        self.call(work)

    def generate_master_key(self, mk_id: str, scheme: int) -> None:
        """C_GenerateKey inside the token: sensitive, never extractable, local."""
        self.call(lambda s: s.generate_key(
            KeyType.AES, 256, id=mk_id.encode("ascii"), label=self.key_label, store=True,
            capabilities=CAPABILITIES_OF[scheme], template=_capability_template(scheme)))
        self._keys.pop(mk_id, None)

    def import_master_key(self, mk_id: str, key: KeyMaterial, scheme: int) -> None:
        """C_CreateObject of a sensitive, non-extractable AES key from shares."""
        def work(session: Any) -> None:
            if self._find_key(session, mk_id) is not None:
                return
            session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                Attribute.ID: mk_id.encode("ascii"), Attribute.LABEL: self.key_label,
                Attribute.VALUE: key.reveal(), **_capability_template(scheme),
            })
        self.call(work)

    def destroy_master_key(self, mk_id: str) -> bool:
        def work(session: Any) -> bool:
            obj = self._find_key(session, mk_id)
            if obj is None:
                return False
            obj.destroy()
            self._keys.pop(mk_id, None)
            return True
        return self.call(work)

    # -- the work -----------------------------------------------------------------

    def random(self, n: int) -> bytes:
        return bytes(self.call(lambda s: s.generate_random(n * 8)))

    def wrap(self, mk_id: str, material: KeyMaterial, aad: bytes) -> bytes:
        """Wrap under ``mk_id`` with the scheme that key was made for (its
        capabilities say which), whatever ``mechanism`` is configured now:
        the setting chooses how *new* master keys are made."""
        def work(session: Any) -> bytes:
            mk = self._find_key(session, mk_id)
            if mk is None:
                raise MasterKeyMissing(self.label, f"master key {mk_id} is not in this token")
            scheme = self._schemes.get(mk_id)
            if scheme is None:
                scheme = blobs.SCHEME_GCM if mk[Attribute.ENCRYPT] else blobs.SCHEME_KWP
                self._schemes[mk_id] = scheme
            if scheme == blobs.SCHEME_GCM:
                nonce = bytes(session.generate_random(blobs.NONCE_BYTES * 8))
                body = mk.encrypt(material.reveal(), mechanism=Mechanism.AES_GCM,
                                  mechanism_param=GCMParams(nonce, aad, blobs.TAG_BYTES * 8))
                return blobs.header(scheme) + nonce + bytes(body)
            transit = session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.VALUE: blobs.kwp_payload(material, aad), **_TRANSIT_TEMPLATE})
            try:
                body = mk.wrap_key(transit, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            finally:
                transit.destroy()
            return blobs.header(scheme) + bytes(body)
        return self.call(work)

    def unwrap(self, mk_id: str, blob: bytes, aad: bytes) -> KeyMaterial:
        scheme, body = blobs.split(blob)

        def work(session: Any) -> KeyMaterial:
            mk = self._find_key(session, mk_id)
            if mk is None:
                raise MasterKeyMissing(self.label, f"master key {mk_id} is not in this token")
            if scheme == blobs.SCHEME_GCM:
                if len(body) < blobs.NONCE_BYTES + blobs.TAG_BYTES + 1:
                    raise IntegrityError(log_detail="wrapped key blob is too short")
                nonce, sealed = body[:blobs.NONCE_BYTES], body[blobs.NONCE_BYTES:]
                return KeyMaterial(bytes(mk.decrypt(
                    sealed, mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, aad, blobs.TAG_BYTES * 8))))
            transit = mk.unwrap_key(ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET, body,
                                    mechanism=Mechanism.AES_KEY_WRAP_PAD,
                                    template=dict(_TRANSIT_TEMPLATE))
            try:
                payload = bytes(transit[Attribute.VALUE])
            finally:
                transit.destroy()
            return blobs.kwp_material(payload, aad)
        return self.call(work, bad_data_check=lambda s: self._self_test(s, mk_id))


NOT_INITIALIZED = "library not initialized"
NO_SUCH_TOKEN = "no token with this label"


def _reason(exc: Exception) -> str:
    """A short, secret-free reason for an operator's log and status()."""
    if type(exc) is pkcs11.PKCS11Error and "not initialized" in str(exc):
        return NOT_INITIALIZED
    return type(exc).__name__


def _passes(check: Callable[[Any], bool], session: Any) -> bool:
    try:
        return bool(check(session))
    except (pkcs11.PKCS11Error, TokenDown):
        return False


def _capability_template(scheme: int) -> dict[Attribute, Any]:
    """The master key template with exactly the capabilities ``scheme`` needs."""
    template: dict[Attribute, Any] = dict(MASTER_KEY_TEMPLATE)
    wanted = CAPABILITIES_OF[scheme]
    for flag, attribute in _CAPABILITY_ATTRIBUTES.items():
        template[attribute] = bool(wanted & flag)
    return template

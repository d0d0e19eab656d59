"""The in-process KMS API every transport uses: key management and crypto.

Management calls read the key from the store, apply a rule from
:mod:`kmsframe.lifecycle`, save it with an optimistic revision check, signal
the change to every worker, and then fire the lifecycle events. Crypto calls
go through the in-memory :class:`~kmsframe.keycache.KeyCache`; the encrypt
path is kept short on purpose (see ``bench/bench_core.py``).
"""

from __future__ import annotations

import binascii
import secrets as _random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar, overload

import attrs

from . import ciphertext as ct
from . import lifecycle
from .access import bindings
from .authorization import SYSTEM, AuthorizationRequest, Principal, request_source
from .errors import (
    DecryptionFailed,
    InvalidCiphertext,
    InvalidRequest,
    KeyDisabled,
    KeyNotFound,
    KeyPendingDeletion,
    KmsError,
    OperationNotAllowed,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    UnsupportedAlgorithm,
    VersionNotFound,
    VersionNotUsable,
)
from .keycache import KeyCache, LoadedKey
from .keystore import KeyRepository
from .model import (
    HistoryEntry,
    FIRST_VERSION,
    OPERATIONS_BY_PURPOSE,
    Key,
    KeyStatus,
    KeyVersion,
    Operation,
    Purpose,
    RotationPolicy,
    VersionState,
)
from .plugins import PluginHost
from .providers import HsmBackend, KeyHandle, is_public_key, slow_operations
from .secrets import KeyMaterial

T = TypeVar("T")
_b2a = binascii.b2a_base64  # with its trailing newline, cut after decoding
_new_result = tuple.__new__
_monotonic = time.monotonic  # NamedTuple's own __new__ is a slow Python call
DEFAULT_MAX_PLAINTEXT = 1 << 20  # 1 MiB per item
DEFAULT_DELETION_WAIT_DAYS = 30
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class EncryptResult(NamedTuple):
    ciphertext: str
    version: int


class DataKey(NamedTuple):
    """A fresh data key: ``plaintext`` (None when only the wrapped form was
    asked for) and ``ciphertext``, the same key encrypted under the KMS key."""

    plaintext: KeyMaterial | None
    ciphertext: str
    version: int


class SignResult(NamedTuple):
    """A signature as text (``VVVVV`` + base64, like a ciphertext) and its version."""

    signature: str
    version: int


class MacResult(NamedTuple):
    """A MAC tag as text (``VVVVV`` + base64) and the version that made it."""

    mac: str
    version: int


class PublicKey(NamedTuple):
    """The public half of an asymmetric key version, as SubjectPublicKeyInfo PEM."""

    version: int
    pem: str


class ItemResult(NamedTuple):
    """One item of a batch: exactly one of ``value`` and ``error`` is set."""

    value: Any
    error: KmsError | None


@attrs.frozen(slots=True)
class ServiceSettings:
    cache_capacity: int = 10_000
    cache_ttl_seconds: float = 300.0
    deletion_wait_days: float = DEFAULT_DELETION_WAIT_DAYS
    min_deletion_wait_days: float = 0.0
    max_plaintext_bytes: int = DEFAULT_MAX_PLAINTEXT
    max_batch_items: int = 1000
    # How often each worker's scheduler looks for due rotations and deletions.
    scheduler_interval_seconds: float = 60.0
    # How often each serving worker polls the store for other hosts' changes
    # (kmsframe.node_sync): the bound on cross-host staleness. 0 turns it off.
    store_poll_seconds: float = 1.0


class ChangeSignal(Protocol):
    """See :mod:`kmsframe.changes`."""

    view: Any  # a buffer whose first 8 bytes change on every bump
    def current(self) -> int: ...

    def bump(self) -> None: ...

    def close(self) -> None: ...


class KeyService:
    def __init__(
        self,
        *,
        plugins: PluginHost,
        hsm: HsmBackend,
        repository: KeyRepository,
        signal: ChangeSignal,
        settings: ServiceSettings = ServiceSettings(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plugins = plugins
        self.hsm = hsm
        self.keys = repository
        self.signal = signal
        self.settings = settings
        self.clock = clock
        self.cache = KeyCache(settings.cache_capacity, settings.cache_ttl_seconds)
        self._change_view = signal.view
        self._seen_change = bytes(signal.view[:8])
        self._max_plaintext = settings.max_plaintext_bytes
        self._load_lock = threading.Lock()
        self._authorizers = plugins.has_authorizers
        # Built-in authorizers (roles, key conditions) need not run on every
        # crypto call; only third-party ones or a key's conditions force it.
        self._crypto_authorizers = plugins.has_crypto_authorizers
        # Set by the deployment's access control to audit every stored change
        # (see kmsframe.access.control).
        self.on_change: Callable[[Key, Sequence[HistoryEntry]], None] | None = None
        # By algorithm id: (its slow operations, is it a public-key algorithm).
        self._slow_operations: dict[str, tuple[frozenset[Operation], bool]] = {}

    # =====================================================================
    # Management
    # =====================================================================

    def create_key(
        self,
        name: str,
        *,
        algorithm: str = "aes-256-gcm",
        purpose: Purpose | str | None = None,
        rotation_policy: RotationPolicy | None = None,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        actor: Principal = SYSTEM,
    ) -> Key:
        _check_name(name)
        algo = self.plugins.algorithm(algorithm)
        if purpose is None:
            if len(algo.purposes) != 1:
                raise InvalidRequest(f"algorithm {algorithm!r} needs an explicit purpose")
            (purpose,) = algo.purposes
        try:
            purpose = Purpose(purpose)
        except ValueError:
            raise InvalidRequest(f"unknown purpose {purpose!r}") from None
        if purpose not in algo.purposes:
            raise InvalidRequest(f"algorithm {algorithm!r} cannot be used to {purpose.value}")
        self._authorize(actor, "keys.create", name)
        now = self.clock()
        key_id = _random.token_hex(16)
        wrapped, public = self._new_material(key_id, FIRST_VERSION, algo.id, purpose)
        key = Key(
            id=key_id,
            name=name,
            algorithm=algo.id,
            purpose=purpose,
            created_at=now,
            primary_version=FIRST_VERSION,
            min_decryption_version=FIRST_VERSION,
            versions=(
                KeyVersion(number=FIRST_VERSION, state=VersionState.ACTIVE, created_at=now,
                           activated_at=now, wrapped=wrapped, public_key=public),
            ),
            rotation_policy=rotation_policy,
            next_rotation_at=None if rotation_policy is None else now + rotation_policy.period_seconds,
            description=description,
            labels=dict(labels or {}),
            history=(lifecycle.HistoryEntry(at=now, action="key.created", actor=str(actor),
                                            version=FIRST_VERSION,
                                            to_state=VersionState.ACTIVE.value),),
        )
        key = self.keys.create(key)
        self._changed(key.name, key, key.history)
        self.plugins.key_created(key)
        return key

    def get_key(self, name: str) -> Key:
        return self.keys.get(name)

    def list_keys(self) -> list[Key]:
        return self.keys.list()

    def rotate(self, name: str, *, actor: Principal = SYSTEM, reason: str | None = None,
               if_due: bool = False) -> Key:
        """Make a new primary version (or activate the announced pre-active one).

        ``if_due`` (the scheduler's rotation) checks, in the same compare-and-swap
        that stores the rotation, that the key is still enabled and due: several
        schedulers may race and the key still rotates once. Then it returns
        None when there was nothing to do.
        """
        self._authorize(actor, "keys.rotate", name)
        current = self.keys.get(name)
        pending = lifecycle.pending_version(current)
        material = None
        if pending is None:
            # Wrapping happens outside the retry loop: HSM calls are not free,
            # and the wrapped blob binds the version number we now reserve.
            number = lifecycle.next_version_number(current)
            material = self._new_material(current.id, number, current.algorithm, current.purpose)

        def change(key: Key) -> lifecycle.Change | None:
            if if_due and not _rotation_due(key, self.clock()):
                return None
            target = lifecycle.pending_version(key)
            events: list[lifecycle.Event] = []
            if target is None:
                if material is None or lifecycle.next_version_number(key) != number:
                    raise _Retry()
                key, _ = lifecycle.add_pre_active(
                    key, wrapped=material[0], public_key=material[1], now=self.clock(),
                    actor=str(actor), reason=reason or "rotation")
                target = lifecycle.pending_version(key)
                assert target is not None
            key, events = lifecycle.promote(key, target.number, now=self.clock(), actor=str(actor),
                                            action="version.rotated", reason=reason)
            if key.rotation_policy is not None:
                key = attrs.evolve(key, next_rotation_at=self.clock() + key.rotation_policy.period_seconds)
            return key, events

        try:
            return self._update(name, change)  # type: ignore[return-value]
        except _Retry:
            return self.rotate(name, actor=actor, reason=reason, if_due=if_due)

    def rollback(self, name: str, *, actor: Principal = SYSTEM, reason: str | None = None) -> Key:
        """Emergency rollback: the previous stable version becomes primary again."""
        self._authorize(actor, "keys.rollback", name)

        def change(key: Key) -> lifecycle.Change:
            target = lifecycle.rollback_target(key)
            return lifecycle.promote(key, target.number, now=self.clock(), actor=str(actor),
                                     action="version.rolled_back", reason=reason)

        return self._update(name, change)

    def set_version_state(self, name: str, version: int, state: VersionState | str, *,
                          actor: Principal = SYSTEM, reason: str | None = None) -> Key:
        try:
            state = VersionState(state)
        except ValueError:
            raise InvalidRequest(f"unknown version state {state!r}") from None
        self._authorize(actor, f"versions.{state.value}", name, version)
        return self._update(name, lambda key: lifecycle.set_version_state(
            key, version, state, now=self.clock(), actor=str(actor), reason=reason))

    def set_min_decryption_version(self, name: str, version: int, *, actor: Principal = SYSTEM,
                                   reason: str | None = None) -> Key:
        self._authorize(actor, "keys.min_decryption_version", name, version)
        return self._update(name, lambda key: lifecycle.set_min_decryption_version(
            key, version, now=self.clock(), actor=str(actor), reason=reason))

    def disable(self, name: str, *, actor: Principal = SYSTEM, reason: str | None = None) -> Key:
        self._authorize(actor, "keys.disable", name)
        return self._update(name, lambda key: lifecycle.set_status(
            key, KeyStatus.DISABLED, now=self.clock(), actor=str(actor), reason=reason))

    def enable(self, name: str, *, actor: Principal = SYSTEM, reason: str | None = None) -> Key:
        self._authorize(actor, "keys.enable", name)
        return self._update(name, lambda key: lifecycle.set_status(
            key, KeyStatus.ENABLED, now=self.clock(), actor=str(actor), reason=reason))

    def schedule_deletion(self, name: str, *, waiting_days: float | None = None,
                          actor: Principal = SYSTEM, reason: str | None = None) -> Key:
        days = self.settings.deletion_wait_days if waiting_days is None else waiting_days
        if not isinstance(days, (int, float)) or days < self.settings.min_deletion_wait_days:
            raise InvalidRequest(
                f"the waiting period must be at least {self.settings.min_deletion_wait_days} days")
        self._authorize(actor, "keys.schedule_deletion", name)
        return self._update(name, lambda key: lifecycle.set_status(
            key, KeyStatus.PENDING_DELETION, now=self.clock(), actor=str(actor), reason=reason,
            deletion_at=self.clock() + days * 86400))

    def cancel_deletion(self, name: str, *, actor: Principal = SYSTEM,
                        reason: str | None = None) -> Key:
        """Cancel a scheduled deletion; the key comes back *disabled*."""
        self._authorize(actor, "keys.cancel_deletion", name)
        return self._update(name, lambda key: lifecycle.set_status(
            key, KeyStatus.DISABLED, now=self.clock(), actor=str(actor), reason=reason))

    def destroy_if_due(self, name: str, *, actor: Principal = SYSTEM) -> Key | None:
        """Erase a key whose deletion waiting period has ended (scheduler's job)."""
        def change(key: Key) -> lifecycle.Change | None:
            if key.status is not KeyStatus.PENDING_DELETION or key.deletion_at is None \
                    or key.deletion_at > self.clock():
                return None
            return lifecycle.destroy(key, now=self.clock(), actor=str(actor))

        return self._update(name, change)

    def announce_rotation(self, name: str, *, actor: Principal = SYSTEM) -> Key | None:
        """Create the next version as pre-active for a coming scheduled rotation."""
        current = self.keys.get(name)
        if lifecycle.pending_version(current) is not None or current.status is not KeyStatus.ENABLED:
            return None
        number = lifecycle.next_version_number(current)
        wrapped, public = self._new_material(current.id, number, current.algorithm, current.purpose)

        def change(key: Key) -> lifecycle.Change | None:
            if lifecycle.pending_version(key) is not None or lifecycle.next_version_number(key) != number:
                return None
            key, _ = lifecycle.add_pre_active(key, wrapped=wrapped, public_key=public,
                                                   now=self.clock(), actor=str(actor),
                                                   reason="scheduled rotation announced")
            return key, [("rotation_due", {"due_at": key.next_rotation_at, "next_version": number})]

        return self._update(name, change)

    def bind_app(self, name: str, app_id: str, operations: Iterable[str], *,
                 actor: Principal = SYSTEM) -> Key:
        """Allow app ``app_id`` the ``operations`` on key ``name`` (replaces its binding)."""
        self._authorize(actor, "keys.bind", name)
        return self._update(name, lambda key: bindings.bind(
            key, app_id, operations, now=self.clock(), actor=str(actor)))

    def unbind_app(self, name: str, app_id: str, *, actor: Principal = SYSTEM) -> Key:
        """Remove app ``app_id``'s binding to key ``name``."""
        self._authorize(actor, "keys.bind", name)
        return self._update(name, lambda key: bindings.unbind(
            key, app_id, now=self.clock(), actor=str(actor)))

    def set_conditions(self, name: str, conditions: Mapping[str, Any], *,
                       actor: Principal = SYSTEM) -> Key:
        """Replace key ``name``'s conditions (see :mod:`kmsframe.access.conditions`)."""
        self._authorize(actor, "keys.conditions", name)
        return self._update(name, lambda key: bindings.set_conditions(
            key, conditions, now=self.clock(), actor=str(actor)))

    @overload
    def _update(self, name: str, change: Callable[[Key], lifecycle.Change]) -> Key: ...

    @overload
    def _update(self, name: str, change: Callable[[Key], lifecycle.Change | None]) -> Key | None: ...

    def _update(self, name: str, change: Callable[[Key], Any]) -> Key | None:
        """Store ``change`` of the key; then signal workers and fire its events.

        Returns the new key, or None when ``change`` found nothing to do.
        """
        seen: list[int] = []  # history length of the version the change applied to

        def tracked(current: Key) -> Any:
            seen.append(len(current.history))
            return change(current)

        key, events = self.keys.update(name, tracked)
        if events is None:
            return None
        self._changed(name, key, key.history[seen[-1]:])
        for method, kwargs in events:
            getattr(self.plugins, method)(key, **kwargs)
        return key

    def _changed(self, name: str, key: Key | None = None,
                 entries: Sequence[HistoryEntry] = ()) -> None:
        self.cache.invalidate(name)
        self.signal.bump()
        if key is not None and self.on_change is not None:
            self.on_change(key, entries)  # the audit log records the new entries, durably

    def _new_material(self, key_id: str, version: int, algorithm: str,
                      purpose: Purpose) -> tuple[Any, str | None]:
        algo = self.plugins.algorithm(algorithm)
        material = algo.generate(self.hsm.random)
        public = algo.load(material).public_key_pem() if purpose is not Purpose.ENCRYPT or \
            algo.data_key_size is None else None
        wrapped = self.hsm.wrap(material, ct.wrap_aad(key_id, version, algorithm, purpose.value))
        return wrapped, public

    # =====================================================================
    # Crypto
    # =====================================================================

    def _loaded(self, name: str) -> LoadedKey:
        """The cached key, reloaded if missing, expired, or changed anywhere."""
        if self._change_view[:8] != self._seen_change:
            self._drop_cache()
        entry = self.cache.get(name)
        if entry is None:
            with self._load_lock:
                key = self.keys.get(name)
                entry = LoadedKey(key, self.cache.new_deadline(), _blocked(key),
                                  self._crypto_authorizers)
                self.cache.put(entry)
        return entry

    def is_warm(self, name: str) -> bool:
        """True when a crypto call on ``name`` will not read the store: its
        record is cached and nothing changed since. Transports use this to
        keep storage reads (a cold cache) off their event loop."""
        if self._change_view[:8] != self._seen_change:
            return False
        entry = self.cache.entries.get(name)
        return entry is not None and entry.deadline >= self.cache.clock()

    def is_slow(self, name: str, op: Operation, batch: bool = False) -> bool:
        """True when a call of ``op`` on the cached key ``name`` should run off
        the transport's event loop: its algorithm declares ``op`` slow
        (:func:`kmsframe.providers.slow_operations`), or ``batch`` is set and
        the algorithm is a public-key one (tens of µs an item add up). False
        for a key not in the cache."""
        entry = self.cache.entries.get(name)
        if entry is None:
            return False
        algorithm = entry.key.algorithm
        known = self._slow_operations.get(algorithm)
        if known is None:
            try:
                plugin = self.plugins.algorithm(algorithm)
                known = (slow_operations(plugin), is_public_key(plugin))
            except UnsupportedAlgorithm:
                known = (frozenset(), False)  # the call itself reports the missing plugin
            self._slow_operations[algorithm] = known
        slow, public_key = known
        return op in slow or (batch and public_key)

    def _drop_cache(self) -> None:
        self._seen_change = bytes(self._change_view[:8])
        self.cache.invalidate()

    def _handle(self, entry: LoadedKey, number: int, opening: bool) -> KeyHandle:
        handle = entry.handles.get(number)
        if handle is not None:
            return handle
        key = entry.key
        version = key.version(number)
        if version is None:
            raise DecryptionFailed() if opening else VersionNotUsable()
        if opening:
            if not version.usable_for_opening or number < key.min_decryption_version:
                raise DecryptionFailed(log_detail=f"{key.name} v{number} is {version.state.value}")
        elif version.state is not VersionState.ACTIVE:
            raise VersionNotUsable()
        assert version.wrapped is not None
        material = self.hsm.unwrap(
            version.wrapped, ct.wrap_aad(key.id, number, key.algorithm, key.purpose.value))
        handle = self.plugins.algorithm(key.algorithm).load(material)
        entry.handles[number] = handle
        return handle

    def _primary(self, name: str, op: Operation, principal: Principal,
                 version: int | None = None) -> LoadedKey:
        """The key, checked for ``op`` by ``principal``, with its primary handle loaded."""
        entry = self._loaded(name)
        entry.raise_if_blocked()
        if op not in OPERATIONS_BY_PURPOSE[entry.key.purpose]:
            raise OperationNotAllowed(f"key {name!r} is a {entry.key.purpose.value} key")
        if principal.kind != "system" and (principal.kind != "app"
                                           or op not in entry.apps.get(principal.id, ())):
            raise _unbound(principal, op, name)
        if entry.hooked:
            self._authorize(principal, op.value, name, version, entry.key.conditions)
        if entry.primary_handle is None:
            handle = self._handle(entry, entry.primary_version, opening=False)
            entry.primary_handle = handle
            if entry.key.purpose is Purpose.ENCRYPT:
                entry.primary_encrypt = handle.encrypt
                # With authorisation plugins every call must go through them.
                entry.encrypt_ready = not entry.hooked
        return entry

    def encrypt(self, name: str, plaintext: bytes, context: Mapping[str, str] | None = None,
                *, principal: Principal = SYSTEM) -> EncryptResult:
        """Encrypt under the primary version; the ciphertext names its version.

        The hot path of the whole product, hence written flat: one cache
        lookup, one change check, the cipher, the encoding. Everything else
        (loading, state and purpose checks, authorisation plugins) happens in
        :meth:`_primary` when the fast path does not apply.
        """
        if self._change_view[:8] != self._seen_change:
            self._drop_cache()
        entry = self.cache.entries.get(name)
        if entry is None or not entry.encrypt_ready or entry.deadline < _monotonic() or (
                principal is not SYSTEM and (principal.kind != "app"
                                             or principal.id not in entry.encrypt_apps)):
            # The slow path checks everything, and raises for a caller that is
            # not the system and not an app bound for encrypt.
            entry = self._primary(name, Operation.ENCRYPT, principal)
        else:
            entry.uses += 1  # a hit: feeds the cache's eviction and its metrics
        if type(plaintext) is not bytes or len(plaintext) > self._max_plaintext:
            raise self._bad_plaintext(plaintext)
        if context:
            self._require_context_binding(entry.key)
            aad = ct.data_aad(entry.key.id, entry.primary_version, context)
        else:
            aad = entry.primary_aad
        text = _b2a(entry.primary_encrypt(plaintext, aad)).decode()  # type: ignore[misc]
        return _new_result(EncryptResult, (entry.primary_prefix + text[:-1], entry.primary_version))

    def _bad_plaintext(self, plaintext: object) -> KmsError:
        if type(plaintext) is not bytes:
            return InvalidRequest("plaintext must be bytes")
        return PayloadTooLarge(f"plaintext is larger than {self._max_plaintext} bytes")

    def decrypt(self, name: str, ciphertext: str, context: Mapping[str, str] | None = None,
                *, principal: Principal = SYSTEM) -> bytes:
        """Open a ciphertext made by :meth:`encrypt`; failures never say why."""
        version, body = ct.decode(ciphertext)
        if self._change_view[:8] != self._seen_change:
            self._drop_cache()
        entry = self.cache.entries.get(name)
        opener = None
        if entry is not None and entry.encrypt_ready and entry.deadline >= _monotonic() and (
                principal is SYSTEM or (principal.kind == "app"
                                        and principal.id in entry.decrypt_apps)):
            opener = entry.openers.get(version)
        if opener is None:
            entry, opener = self._opener(name, version, principal)
        else:
            entry.uses += 1
        if context:
            self._require_context_binding(entry.key)
            return opener[0](body, ct.data_aad(entry.key.id, version, context))
        return opener[0](body, opener[1])

    def _opener(self, name: str, version: int,
                principal: Principal) -> tuple[LoadedKey, tuple[Callable[[bytes, bytes], bytes], bytes]]:
        """Slow path of :meth:`decrypt`: all checks, then the version's decrypt function."""
        entry = self._primary(name, Operation.DECRYPT, principal, version)
        handle = self._handle(entry, version, opening=True)
        opener = (handle.decrypt, ct.data_aad(entry.key.id, version))
        if not entry.hooked:
            entry.openers[version] = opener
        return entry, opener

    def rewrap(self, name: str, ciphertext: str, context: Mapping[str, str] | None = None,
               *, new_context: Mapping[str, str] | None = None,
               principal: Principal = SYSTEM) -> EncryptResult:
        """Decrypt with the ciphertext's version and encrypt with the primary (密钥升级)."""
        self._primary(name, Operation.REWRAP, principal)
        plaintext = self.decrypt(name, ciphertext, context)
        return self.encrypt(name, plaintext, context if new_context is None else new_context)

    def generate_data_key(self, name: str, context: Mapping[str, str] | None = None, *,
                          size: int | None = None, include_plaintext: bool = True,
                          principal: Principal = SYSTEM) -> DataKey:
        """A fresh data key from the HSM's generator, returned wrapped (and plain)."""
        entry = self._primary(name, Operation.DATAKEY, principal)
        algo = self.plugins.algorithm(entry.key.algorithm)
        size = size or algo.data_key_size
        if size is None or not isinstance(size, int) or not 16 <= size <= 64:
            raise InvalidRequest("data key size must be between 16 and 64 bytes")
        plaintext = self.hsm.random(size)
        wrapped = self.encrypt(name, plaintext, context)
        return DataKey(KeyMaterial(plaintext) if include_plaintext else None,
                       wrapped.ciphertext, wrapped.version)

    def batch(self, operation: Callable[..., T], items: Sequence[Mapping[str, Any]]) -> list[ItemResult]:
        """Run ``operation(**item)`` per item; one bad item fails alone."""
        if len(items) > self.settings.max_batch_items:
            raise PayloadTooLarge(f"a batch holds at most {self.settings.max_batch_items} items")
        results = []
        for item in items:
            try:
                results.append(ItemResult(operation(**item), None))
            except KmsError as exc:
                results.append(ItemResult(None, exc))
            except TypeError:
                results.append(ItemResult(None, InvalidRequest("the item has wrong or missing fields")))
        return results

    # -- signatures, MACs, public keys (asymmetric encryption uses encrypt/decrypt) --

    def _require_context_binding(self, key: Key) -> None:
        """Refuse an encryption context that the key's algorithm cannot bind.

        Public-key encryption (RSA-OAEP with an empty label, SM2) has no
        associated data, so a context would be silently ignored; say so instead.
        """
        if not getattr(self.plugins.algorithm(key.algorithm), "binds_aad", True):
            raise InvalidRequest(
                f"{key.algorithm} keys cannot bind an encryption context; omit it")

    def _check_message(self, message: bytes) -> None:
        if type(message) is not bytes:
            raise InvalidRequest("message must be bytes")
        if len(message) > self.settings.max_plaintext_bytes:
            raise PayloadTooLarge(
                f"message is larger than {self.settings.max_plaintext_bytes} bytes")

    @staticmethod
    def _options(options: Mapping[str, Any] | None) -> Mapping[str, Any]:
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise InvalidRequest("options must be an object")
        return options

    def sign(self, name: str, message: bytes, options: Mapping[str, Any] | None = None,
             *, principal: Principal = SYSTEM) -> SignResult:
        """Sign with the primary version; the signature names its version.

        ``options`` are the algorithm's (e.g. SM2's ``distinguishing_id``).
        """
        entry = self._primary(name, Operation.SIGN, principal)
        self._check_message(message)
        body = entry.primary_handle.sign(message, self._options(options))  # type: ignore[union-attr]
        return SignResult(entry.primary_prefix + ct.b2a(body), entry.primary_version)

    def verify(self, name: str, message: bytes, signature: str,
               options: Mapping[str, Any] | None = None, *,
               principal: Principal = SYSTEM) -> bool:
        """Check a signature made by :meth:`sign` with the version its prefix names.

        True or False only: a malformed signature, an unknown version or one
        that is retired, destroyed or compromised is simply not valid; expired
        versions still verify. Errors are about the key or the request.
        """
        return self._check_tag(name, Purpose.SIGN, message, signature, self._options(options),
                               principal)

    def mac(self, name: str, message: bytes, *, principal: Principal = SYSTEM) -> MacResult:
        """MAC ``message`` with the primary version; the tag names its version."""
        entry = self._primary(name, Operation.MAC, principal)
        self._check_message(message)
        body = entry.primary_handle.mac(message)  # type: ignore[union-attr]
        return MacResult(entry.primary_prefix + ct.b2a(body), entry.primary_version)

    def verify_mac(self, name: str, message: bytes, mac: str, *,
                   principal: Principal = SYSTEM) -> bool:
        """Check a tag made by :meth:`mac` (constant time), like :meth:`verify`."""
        return self._check_tag(name, Purpose.MAC, message, mac, {}, principal)

    def _check_tag(self, name: str, purpose: Purpose, message: bytes, text: str,
                   options: Mapping[str, Any], principal: Principal) -> bool:
        entry = self._loaded(name)
        entry.raise_if_blocked()
        if entry.key.purpose is not purpose:
            raise OperationNotAllowed(f"key {name!r} is a {entry.key.purpose.value} key")
        self._check_message(message)
        if not isinstance(text, str):
            raise InvalidRequest("the signature or MAC must be text")
        try:
            version, body = ct.decode(text)
        except InvalidCiphertext:
            version, body = None, b""
        self._check_binding(entry, principal, Operation.VERIFY, name, version)
        if version is None:
            return False
        try:
            handle = self._handle(entry, version, opening=True)
        except DecryptionFailed:  # no such version, or one that may no longer open
            return False
        return handle.verify(message, body, options)

    def public_key(self, name: str, version: int | None = None, *,
                   principal: Principal = SYSTEM) -> PublicKey:
        """The SubjectPublicKeyInfo PEM of the primary (or a named) version.

        Pre-active versions are included, so relying parties can learn the
        next key before a rotation; retired, compromised and destroyed
        versions are not offered. Needs no HSM call: public keys are stored.
        """
        entry = self._loaded(name)
        entry.raise_if_blocked()
        key = entry.key
        if key.purpose is Purpose.MAC:
            raise OperationNotAllowed(f"key {name!r} is a mac key and has no public key")
        op = Operation.VERIFY if key.purpose is Purpose.SIGN else Operation.ENCRYPT
        self._check_binding(entry, principal, op, name, version)
        number = key.primary_version if version is None else version
        if type(number) is not int:
            raise InvalidRequest("version must be an integer")
        found = key.version(number)
        if found is None:
            raise VersionNotFound(f"key {name!r} has no version {number}")
        if found.public_key is None:
            raise OperationNotAllowed(f"key {name!r} ({key.algorithm}) has no public key")
        if found.state not in (VersionState.PRE_ACTIVE, VersionState.ACTIVE, VersionState.EXPIRED):
            raise VersionNotUsable(f"version {number} of key {name!r} is {found.state.value}")
        return PublicKey(number, found.public_key)

    # =====================================================================
    # Authorization
    # =====================================================================

    def _check_binding(self, entry: LoadedKey, principal: Principal, op: Operation, name: str,
                       version: int | None) -> None:
        """The key's app binding (and, if any, its conditions) for ``op``."""
        if principal.kind != "system" and (principal.kind != "app"
                                           or op not in entry.apps.get(principal.id, ())):
            raise _unbound(principal, op, name)
        if entry.hooked:
            self._authorize(principal, op.value, name, version, entry.key.conditions)

    def _authorize(self, principal: Principal, operation: str, key_name: str | None = None,
                   version: int | None = None, conditions: Mapping[str, Any] | None = None) -> None:
        if not self._authorizers:
            return
        denial = self.plugins.authorize(AuthorizationRequest(
            principal=principal, operation=operation, key_name=key_name, version=version,
            source=request_source.get(), conditions=conditions or {}))
        if denial is not None:
            if denial.code == RateLimited.code:
                raise RateLimited(log_detail=denial.reason)
            raise PermissionDenied(log_detail=denial.reason)


def _unbound(principal: Principal, op: Operation, name: str) -> PermissionDenied:
    """The key is not bound to this caller for this operation (apps only)."""
    if principal.kind != "app":
        return PermissionDenied(log_detail=f"{principal} is not an app; crypto is for apps")
    return PermissionDenied(log_detail=f"key {name!r} is not bound to app {principal.id!r} "
                                       f"for {op.value}")


class _Retry(Exception):
    """The key changed between reserving a version number and saving it."""


def _rotation_due(key: Key, now: float) -> bool:
    return (key.status is KeyStatus.ENABLED and key.next_rotation_at is not None
            and key.next_rotation_at <= now)


def _blocked(key: Key) -> tuple[type[KmsError], str] | None:
    if key.status is KeyStatus.ENABLED:
        return None
    if key.status is KeyStatus.DISABLED:
        return KeyDisabled, f"key {key.name!r} is disabled"
    if key.status is KeyStatus.PENDING_DELETION:
        return KeyPendingDeletion, f"key {key.name!r} is scheduled for deletion"
    return KeyNotFound, f"key {key.name!r} is destroyed"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not set(name) <= _NAME_CHARS:
        raise InvalidRequest(
            "key names are 1-128 characters of letters, digits, '-', '_' and '.'")

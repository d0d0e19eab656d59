"""The contracts plugins implement: algorithms, HSM backends, key stores.

Plugins hand objects satisfying these protocols to the registrar hooks in
:mod:`kmsframe.hookspecs`. The conformance suites in :mod:`kmsframe.testing`
check an implementation against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from .model import Operation, Purpose, WrappedKey
from .secrets import KeyMaterial

# ---------------------------------------------------------------------------
# Algorithms
# ---------------------------------------------------------------------------


@runtime_checkable
class KeyHandle(Protocol):
    """A working-key version, unwrapped and ready to use (held only in memory).

    Algorithms implement the methods that fit their purpose and raise
    :class:`kmsframe.errors.OperationNotAllowed` from the rest.
    ``decrypt`` raises :class:`kmsframe.errors.DecryptionFailed` for *any*
    failure; ``verify`` returns False rather than raising.
    """

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes: ...

    def sign(self, message: bytes, options: Mapping[str, Any]) -> bytes: ...

    def verify(self, message: bytes, signature: bytes, options: Mapping[str, Any]) -> bool: ...

    def mac(self, message: bytes) -> bytes: ...

    def public_key_pem(self) -> str | None: ...


@runtime_checkable
class Algorithm(Protocol):
    """An algorithm, named by a stable id such as ``"aes-256-gcm"``.

    ``generate`` makes new key material; symmetric algorithms draw it from
    ``random_bytes`` (the HSM's generator). ``load`` turns material into a
    :class:`KeyHandle`; the core caches handles, so ``load`` may do expensive
    set-up once. ``data_key_size`` is the size of data keys this algorithm
    issues (symmetric encryption algorithms only, else None).

    Optional attributes, read with ``getattr`` and a default:

    * ``binds_aad`` (default True) — False for public-key encryption (RSA-OAEP
      with an empty label, SM2), which has no associated data: the core then
      refuses an encryption context instead of silently ignoring it;
    * ``min_plaintext_size`` / ``max_plaintext_size`` (default 0 / None) —
      bounds of public-key encryption; outside them ``encrypt`` raises
      :class:`kmsframe.errors.InvalidRequest`;
    * ``slow_operations`` (a frozenset of :class:`~kmsframe.model.Operation`;
      default: every operation for a public-key algorithm, none for a
      symmetric one, see :func:`slow_operations`) — the operations that take
      long enough (more than about 0.1 ms, a few AES calls; an RSA-4096
      signature takes milliseconds) that a transport runs them in its thread
      pool rather than on its event loop, where they would stall every other
      request of the worker.
    """

    id: str
    purposes: frozenset[Purpose]

    @property
    def data_key_size(self) -> int | None: ...

    def generate(self, random_bytes: Callable[[int], bytes]) -> KeyMaterial: ...

    def load(self, material: KeyMaterial) -> KeyHandle: ...


def slow_operations(algorithm: Algorithm) -> frozenset[Operation]:
    """The operations of ``algorithm`` that transports keep off their event loop.

    What the algorithm declares in ``slow_operations``; otherwise every
    operation of a public-key algorithm (one that signs, or encrypts without
    binding associated data) and none of a symmetric one.
    """
    declared = getattr(algorithm, "slow_operations", None)
    if declared is not None:
        return frozenset(Operation(op) for op in declared)
    return frozenset(Operation) if is_public_key(algorithm) else frozenset()


def is_public_key(algorithm: Algorithm) -> bool:
    """Does ``algorithm`` sign, or encrypt without binding associated data?

    Its calls take tens of microseconds at least, so transports run its
    *batches* off their event loop even when single calls stay on it.
    """
    return Purpose.SIGN in algorithm.purposes or not getattr(algorithm, "binds_aad", True)


# ---------------------------------------------------------------------------
# HSM backends
# ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class HsmStatus:
    """What ``/readyz`` and ``kmsframe plugins`` say about an HSM."""

    backend: str
    ready: bool
    sealed: bool
    hardware: bool
    master_key_id: str | None
    detail: str = ""
    tokens: tuple[Mapping[str, Any], ...] = ()


@runtime_checkable
class HsmBackend(Protocol):
    """Keeps the master key; wraps and unwraps working keys; supplies randomness.

    The master key never leaves the backend. ``wrap`` binds ``aad`` so that a
    wrapped blob moved to another key record fails to ``unwrap``; ``unwrap``
    raises :class:`kmsframe.errors.IntegrityError` when it does not open and
    :class:`kmsframe.errors.HsmSealed` while sealed.
    ``generate_master_key`` creates a new master key, makes it current and
    returns its id (a ceremony; the core gates it by dual control).
    """

    id: str
    hardware: bool

    def open(self) -> None: ...

    def close(self) -> None: ...

    def status(self) -> HsmStatus: ...

    def wrap(self, material: KeyMaterial, aad: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> KeyMaterial: ...

    def random(self, n: int) -> bytes: ...

    def generate_master_key(self) -> str: ...

    def initialize(self, options: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """Create the first master key if there is none (idempotent).

        Returns what the operator must be shown once (the master key id; a
        backend that splits an unseal key into shares returns them here).
        """
        ...


# ---------------------------------------------------------------------------
# Key stores
# ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class StoredDocument:
    """A JSON document in a key store, with the revision it was read at."""

    kind: str
    id: str
    revision: int
    data: Mapping[str, Any]


@runtime_checkable
class Storage(Protocol):
    """A small transactional document store with an append-only log.

    Documents are JSON-ready mappings grouped by ``kind`` (``"key"``, ``"app"``
    ...). ``put`` is a compare-and-swap: ``expected_revision=0`` means "must not
    exist", a positive value means "must still be at that revision"; a lost race
    raises :class:`kmsframe.errors.ConcurrentModification`, an existing
    document with ``0`` raises :class:`kmsframe.errors.AlreadyExists`. Each
    successful write returns the document's new revision. ``change_counter``
    grows with every write anywhere in the store, so remote service nodes can
    poll it cheaply. ``append`` adds to a named log and returns its sequence
    number (1, 2, ...); sequence numbers have no gaps.
    """

    id: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    def ping(self) -> None: ...

    def get(self, kind: str, id: str) -> StoredDocument | None: ...

    def list(self, kind: str) -> list[StoredDocument]: ...

    def put(
        self, kind: str, id: str, data: Mapping[str, Any], expected_revision: int
    ) -> int: ...

    def delete(self, kind: str, id: str, expected_revision: int) -> None: ...

    def append(self, log: str, entry: Mapping[str, Any]) -> int: ...

    def read_log(self, log: str, after: int = 0, limit: int = 1000) -> list[tuple[int, Mapping[str, Any]]]: ...

    def change_counter(self) -> int: ...


# ---------------------------------------------------------------------------
# Audit sinks and transports
# ---------------------------------------------------------------------------


@runtime_checkable
class AuditSink(Protocol):
    """Receives audit records (JSON-ready mappings with no secret in them).

    ``write`` must make the records durable before returning; raising means the
    records were not kept, and the core fails closed.
    """

    id: str

    def write(self, records: Iterable[Mapping[str, Any]]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """A way for apps to reach the KMS (HTTP, gRPC...).

    ``serve`` blocks, serving the deployment built by ``deployment_factory``
    in each worker, until told to stop.
    """

    id: str

    def serve(self, deployment_factory: Callable[[], Any], options: Mapping[str, Any]) -> None: ...

"""Every hook a kmsframe plugin can implement.

Plugins are distributions with an entry point in the ``kmsframe`` group; the
deployment loads only the entry points its configuration names and calls
``pm.check_pending()``, so a misspelled hook fails at startup. Implement a hook
with ``@kmsframe.hookimpl``. All hooks are prefixed ``kms_``.

Hooks are grouped by lifecycle:

* registration — plugins hand the core the providers they offer, keyed by a
  stable id (``register(...)`` callables, as in llm and tox);
* authorization — any plugin can veto an operation;
* lifecycle events — notifications after key changes have been stored.

Unless stated, a hook is *not* ``firstresult``: every implementation is called.
Audit sinks are registered, not hooked, so a failing sink can fail closed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .authorization import AuthorizationRequest, Denial
    from .model import Key, KeyStatus, VersionState
    from .providers import Algorithm, AuditSink, HsmBackend, Storage, Transport

PROJECT = "kmsframe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# A factory builds a provider from its plugin's settings table in the
# deployment's TOML (secrets already resolved to kmsframe.secrets.Secret).
HsmFactory = Callable[[Mapping[str, Any]], "HsmBackend"]
StorageFactory = Callable[[Mapping[str, Any]], "Storage"]
AuditSinkFactory = Callable[[Mapping[str, Any]], "AuditSink"]
TransportFactory = Callable[[Mapping[str, Any]], "Transport"]


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------


@hookspec
def kms_register_algorithms(register: Callable[["Algorithm"], None]) -> None:
    """Offer algorithms.

    :param register: call ``register(algorithm)`` once per algorithm; the
        algorithm's ``id`` (e.g. ``"aes-256-gcm"``) must be stable forever, as
        stored keys name their algorithm by it. Registering an id twice is a
        startup error naming both plugins.
    :return: nothing.
    """


@hookspec
def kms_register_hsm_backends(register: Callable[[str, HsmFactory], None]) -> None:
    """Offer HSM backends.

    :param register: call ``register(backend_id, factory)``; the deployment's
        ``[hsm] backend = "<backend_id>"`` selects one, and ``factory(settings)``
        builds it from the ``[hsm]`` table. The factory must not touch the
        device; the core calls ``open()`` on the returned backend.
    :return: nothing.
    """


@hookspec
def kms_register_storage_backends(register: Callable[[str, StorageFactory], None]) -> None:
    """Offer key-store backends.

    :param register: call ``register(backend_id, factory)``; ``[storage]
        backend = "<backend_id>"`` selects one and ``factory(settings)`` builds
        it from the ``[storage]`` table without connecting yet.
    :return: nothing.
    """


@hookspec
def kms_register_audit_sinks(register: Callable[[str, AuditSinkFactory], None]) -> None:
    """Offer audit sinks.

    :param register: call ``register(sink_id, factory)``; each ``[[audit.sinks]]``
        table with ``type = "<sink_id>"`` builds one sink with ``factory(settings)``.
    :return: nothing.
    """


@hookspec
def kms_register_transports(register: Callable[[str, TransportFactory], None]) -> None:
    """Offer transports by which apps reach the KMS (HTTP, gRPC...).

    :param register: call ``register(transport_id, factory)``.
    :return: nothing.
    """


@hookspec
def kms_register_approval_executors(register: Callable[[str, Any], None]) -> None:
    """Offer what an approved dual-control request runs (a plugin's own
    sensitive operation, or a replacement for a built-in one).

    :param register: call ``register(operation, executor)`` with a
        :class:`kmsframe.approvals.ApprovalExecutor`; ``operation`` is e.g.
        ``"mk.backup"`` (a plugin's executor wins over the core's). Its approval rule comes from the deployment's
        ``[approvals]`` table (master-key operations default to 3 security
        admins + 1 operator). The executor runs once, after the quorum.
    :return: nothing.
    """


# ---------------------------------------------------------------------------
# Authorization
# ---------------------------------------------------------------------------


@hookspec
def kms_authorize(request: "AuthorizationRequest") -> "Denial | None":
    """Decide whether an operation may go ahead; any plugin can veto it.

    Called for every management and crypto operation after the core's own
    checks passed. Every implementation is called; the first
    :class:`kmsframe.authorization.Denial` returned vetoes the operation (the
    caller gets ``permission_denied`` or ``rate_limited`` and the denial is
    audited with its ``reason``).

    :param request: who (principal), what (operation), which key and version,
        and where from (source address), plus the key's conditions.
    :return: ``None`` to allow, or a ``Denial`` to veto.
    """


# ---------------------------------------------------------------------------
# Lifecycle events (called after the change is durably stored)
# ---------------------------------------------------------------------------


@hookspec
def kms_key_created(key: "Key") -> None:
    """A working key was created with its first version.

    :param key: the stored key (no material in it).
    :return: nothing; exceptions are logged and do not undo the creation.
    """


@hookspec
def kms_rotation_due(key: "Key", due_at: float, next_version: int) -> None:
    """A key's automatic rotation is coming: the notice lead time has begun.

    Fired once per rotation by the scheduler, ``notice_seconds`` before
    ``due_at``, when the next version has been created as pre-active.

    :param key: the key, with ``next_version`` already in its versions.
    :param due_at: when the rotation will happen (UNIX seconds).
    :param next_version: the version that will become primary.
    :return: nothing.
    """


@hookspec
def kms_version_rotated(key: "Key", previous_version: int, new_version: int) -> None:
    """A new primary version took over (rotation or rollback).

    :param key: the key after the change.
    :param previous_version: the primary before.
    :param new_version: the primary now.
    :return: nothing.
    """


@hookspec
def kms_version_state_changed(
    key: "Key",
    version: int,
    old_state: "VersionState",
    new_state: "VersionState",
    reason: str | None,
) -> None:
    """A key version moved between lifecycle states.

    :param key: the key after the change.
    :param version: the version number.
    :param old_state: its state before.
    :param new_state: its state now.
    :param reason: the reason recorded in the key's history, if any.
    :return: nothing.
    """


@hookspec
def kms_key_status_changed(key: "Key", old_status: "KeyStatus", new_status: "KeyStatus") -> None:
    """A key was enabled, disabled, scheduled for deletion or had that cancelled.

    :param key: the key after the change.
    :param old_status: its status before.
    :param new_status: its status now.
    :return: nothing.
    """


@hookspec
def kms_key_destroyed(key: "Key") -> None:
    """A key's deletion waiting period ended and its material was erased.

    :param key: the key's remaining metadata (every version destroyed).
    :return: nothing.
    """

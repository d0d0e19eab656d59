"""Key and version lifecycle rules, as pure functions over :class:`Key` values.

Each function checks the rule, returns the changed key and the events to fire
once the change is stored. Nothing here touches storage or the HSM.
"""

from __future__ import annotations

from typing import Any

import attrs

from .errors import InvalidRequest, InvalidStateTransition, VersionNotFound
from .model import (
    ALLOWED_TRANSITIONS,
    LAST_VERSION,
    HistoryEntry,
    Key,
    KeyStatus,
    KeyVersion,
    VersionState,
    WrappedKey,
)

# An event is (facade method name, keyword arguments without "key").
Event = tuple[str, dict[str, Any]]
Change = tuple[Key, list[Event]]


def _log(key: Key, entry: HistoryEntry) -> tuple[HistoryEntry, ...]:
    return (*key.history, entry)


def _require_live(key: Key) -> None:
    if key.status is KeyStatus.DESTROYED:
        raise InvalidStateTransition("the key is destroyed")
    if key.status is KeyStatus.PENDING_DELETION:
        raise InvalidStateTransition("the key is scheduled for deletion; cancel that first")


def _version(key: Key, number: int) -> KeyVersion:
    v = key.version(number)
    if v is None:
        raise VersionNotFound(f"key {key.name!r} has no version {number}")
    return v


def next_version_number(key: Key) -> int:
    number = key.latest_version + 1
    if number > LAST_VERSION:
        raise InvalidStateTransition("the key has used every version number (up to 99999)")
    return number


def add_pre_active(
    key: Key, *, wrapped: WrappedKey, public_key: str | None, now: float, actor: str, reason: str
) -> Change:
    """Create the next version as pre-active (announced, not yet encrypting)."""
    _require_live(key)
    number = next_version_number(key)
    version = KeyVersion(
        number=number, state=VersionState.PRE_ACTIVE, created_at=now,
        wrapped=wrapped, public_key=public_key,
    )
    new = attrs.evolve(
        key,
        versions=(*key.versions, version),
        history=_log(key, HistoryEntry(at=now, action="version.created", actor=actor,
                                       version=number, to_state=VersionState.PRE_ACTIVE.value,
                                       reason=reason)),
    )
    return new, []


def pending_version(key: Key) -> KeyVersion | None:
    """The oldest pre-active version, the one a rotation activates."""
    pending = [v for v in key.versions if v.state is VersionState.PRE_ACTIVE]
    return min(pending, key=lambda v: v.number) if pending else None


def promote(key: Key, number: int, *, now: float, actor: str, action: str, reason: str | None) -> Change:
    """Make ``number`` the primary; the old primary expires (decrypt only)."""
    _require_live(key)
    target = _version(key, number)
    old = key.primary
    if target.number == old.number:
        raise InvalidStateTransition(f"version {number} is already primary")
    if VersionState.ACTIVE not in ALLOWED_TRANSITIONS[target.state] or target.wrapped is None:
        raise InvalidStateTransition(
            f"version {number} is {target.state.value} and cannot become primary"
        )
    versions = key.replace_version(
        attrs.evolve(old, state=VersionState.EXPIRED, expired_at=now)
    )
    promoted = attrs.evolve(target, state=VersionState.ACTIVE, activated_at=now, expired_at=None)
    versions = tuple(promoted if v.number == number else v for v in versions)
    history = _log(key, HistoryEntry(at=now, action=action, actor=actor, version=number,
                                     from_state=target.state.value,
                                     to_state=VersionState.ACTIVE.value, reason=reason))
    history = (*history, HistoryEntry(at=now, action="version.expired", actor=actor,
                                      version=old.number, from_state=old.state.value,
                                      to_state=VersionState.EXPIRED.value, reason=reason))
    min_dec = min(key.min_decryption_version, number)
    new = attrs.evolve(key, versions=versions, primary_version=number, history=history,
                       min_decryption_version=min_dec)
    events: list[Event] = [
        ("version_state_changed", {"version": old.number, "old": old.state,
                                   "new": VersionState.EXPIRED, "reason": reason}),
        ("version_state_changed", {"version": number, "old": target.state,
                                   "new": VersionState.ACTIVE, "reason": reason}),
        ("version_rotated", {"previous_version": old.number, "new_version": number}),
    ]
    return new, events


def rollback_target(key: Key) -> KeyVersion:
    """The previous stable version: the newest expired one below the primary."""
    candidates = [
        v for v in key.versions
        if v.number < key.primary_version and v.state is VersionState.EXPIRED
        and v.wrapped is not None and v.number >= key.min_decryption_version
    ]
    if not candidates:
        raise InvalidStateTransition("there is no earlier usable version to roll back to")
    return max(candidates, key=lambda v: v.number)


def set_version_state(
    key: Key, number: int, state: VersionState, *, now: float, actor: str, reason: str | None
) -> Change:
    """Move a non-primary version to ``state`` (expired, retired, compromised, destroyed)."""
    if key.status is KeyStatus.DESTROYED:
        raise InvalidStateTransition("the key is destroyed")
    version = _version(key, number)
    if state is VersionState.ACTIVE:
        raise InvalidStateTransition("a version becomes active only by rotation or rollback")
    if state is VersionState.PRE_ACTIVE or state not in ALLOWED_TRANSITIONS[version.state]:
        raise InvalidStateTransition(
            f"version {number} cannot go from {version.state.value} to {state.value}"
        )
    if number == key.primary_version:
        raise InvalidStateTransition(
            "the primary version cannot change state; rotate or roll back first"
        )
    changed = attrs.evolve(version, state=state)
    if state is VersionState.DESTROYED:
        changed = attrs.evolve(changed, wrapped=None, destroyed_at=now)
    if state is VersionState.EXPIRED and version.expired_at is None:
        changed = attrs.evolve(changed, expired_at=now)
    new = attrs.evolve(
        key,
        versions=key.replace_version(changed),
        history=_log(key, HistoryEntry(at=now, action="version.state", actor=actor, version=number,
                                       from_state=version.state.value, to_state=state.value,
                                       reason=reason)),
    )
    return new, [("version_state_changed", {"version": number, "old": version.state,
                                            "new": state, "reason": reason})]


def set_min_decryption_version(key: Key, number: int, *, now: float, actor: str, reason: str | None) -> Change:
    _require_live(key)
    _version(key, number)
    if number > key.primary_version:
        raise InvalidRequest("the minimum decryption version cannot exceed the primary version")
    new = attrs.evolve(
        key,
        min_decryption_version=number,
        history=_log(key, HistoryEntry(at=now, action="key.min_decryption_version", actor=actor,
                                       version=number, reason=reason)),
    )
    return new, []


def set_status(key: Key, status: KeyStatus, *, now: float, actor: str, reason: str | None,
               deletion_at: float | None = None) -> Change:
    old = key.status
    allowed = {
        KeyStatus.ENABLED: {KeyStatus.DISABLED, KeyStatus.PENDING_DELETION},
        KeyStatus.DISABLED: {KeyStatus.ENABLED, KeyStatus.PENDING_DELETION},
        KeyStatus.PENDING_DELETION: {KeyStatus.DISABLED},  # cancel → disabled, enable explicitly
        KeyStatus.DESTROYED: set(),
    }
    if status not in allowed[old]:
        raise InvalidStateTransition(f"a {old.value} key cannot become {status.value}")
    new = attrs.evolve(
        key,
        status=status,
        deletion_at=deletion_at if status is KeyStatus.PENDING_DELETION else None,
        history=_log(key, HistoryEntry(at=now, action=f"key.{status.value}", actor=actor,
                                       from_state=old.value, to_state=status.value, reason=reason)),
    )
    return new, [("key_status_changed", {"old": old, "new": status})]


def destroy(key: Key, *, now: float, actor: str) -> Change:
    """Erase every version's material; keep the metadata and history."""
    if key.status is not KeyStatus.PENDING_DELETION:
        raise InvalidStateTransition("only a key scheduled for deletion can be destroyed")
    versions = tuple(
        attrs.evolve(v, state=VersionState.DESTROYED, wrapped=None, destroyed_at=now)
        for v in key.versions
    )
    new = attrs.evolve(
        key,
        versions=versions,
        status=KeyStatus.DESTROYED,
        rotation_policy=None,
        next_rotation_at=None,
        history=_log(key, HistoryEntry(at=now, action="key.destroyed", actor=actor,
                                       from_state=key.status.value,
                                       to_state=KeyStatus.DESTROYED.value)),
    )
    return new, [("key_status_changed", {"old": key.status, "new": KeyStatus.DESTROYED}),
                 ("key_destroyed", {})]

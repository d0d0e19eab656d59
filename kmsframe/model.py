"""The domain model: keys, their versions, states and policies.

Values are frozen ``attrs`` classes; a change produces a new value (``evolve``)
which the key store saves with an optimistic revision check. Nothing here holds
key material in the clear: a version carries only its *wrapped* form.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

FIRST_VERSION = 10001
LAST_VERSION = 99999


class Purpose(str, enum.Enum):
    """What a key is for. One key, one purpose (the article's 一钥一用)."""

    ENCRYPT = "encrypt"  # encrypt / decrypt / rewrap / datakey
    SIGN = "sign"  # sign / verify / public-key
    MAC = "mac"  # mac / verify-mac


class Operation(str, enum.Enum):
    """Crypto operations an app can be allowed to perform with a key."""

    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    REWRAP = "rewrap"
    DATAKEY = "datakey"
    SIGN = "sign"
    VERIFY = "verify"
    MAC = "mac"


OPERATIONS_BY_PURPOSE: Mapping[Purpose, frozenset[Operation]] = {
    Purpose.ENCRYPT: frozenset(
        {Operation.ENCRYPT, Operation.DECRYPT, Operation.REWRAP, Operation.DATAKEY}
    ),
    Purpose.SIGN: frozenset({Operation.SIGN, Operation.VERIFY}),
    Purpose.MAC: frozenset({Operation.MAC, Operation.VERIFY}),
}


class VersionState(str, enum.Enum):
    """The life of one key version.

    ``pre_active`` → ``active`` → ``expired`` (decrypt/verify only: the smooth
    transition) → ``retired`` (no use) → ``destroyed`` (material erased,
    metadata kept); ``compromised`` from anywhere but ``destroyed``.
    """

    PRE_ACTIVE = "pre_active"
    ACTIVE = "active"
    EXPIRED = "expired"
    RETIRED = "retired"
    DESTROYED = "destroyed"
    COMPROMISED = "compromised"


# Which states may follow which. ``active`` is entered only through rotation
# or rollback, which also move the primary pointer.
ALLOWED_TRANSITIONS: Mapping[VersionState, frozenset[VersionState]] = {
    VersionState.PRE_ACTIVE: frozenset(
        {VersionState.ACTIVE, VersionState.RETIRED, VersionState.COMPROMISED}
    ),
    VersionState.ACTIVE: frozenset(
        {VersionState.EXPIRED, VersionState.RETIRED, VersionState.COMPROMISED}
    ),
    VersionState.EXPIRED: frozenset(
        {VersionState.ACTIVE, VersionState.RETIRED, VersionState.COMPROMISED}
    ),
    VersionState.RETIRED: frozenset(
        {VersionState.EXPIRED, VersionState.DESTROYED, VersionState.COMPROMISED}
    ),
    VersionState.COMPROMISED: frozenset({VersionState.DESTROYED}),
    VersionState.DESTROYED: frozenset(),
}

# States whose material may open (decrypt, verify) existing data.
OPENING_STATES = frozenset({VersionState.ACTIVE, VersionState.EXPIRED})


class KeyStatus(str, enum.Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    PENDING_DELETION = "pending_deletion"
    DESTROYED = "destroyed"


@attrs.frozen(slots=True)
class WrappedKey:
    """A working-key version wrapped by a master key inside an HSM.

    ``hsm`` is the stable id of the HSM backend, ``master_key_id`` names the
    master key (so master keys can rotate), ``blob`` is opaque to the core.
    """

    hsm: str
    master_key_id: str
    blob: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(slots=True)
class KeyVersion:
    number: int
    state: VersionState
    created_at: float
    activated_at: float | None = None
    expired_at: float | None = None
    destroyed_at: float | None = None
    wrapped: WrappedKey | None = None
    # Public half of an asymmetric key (PEM); safe to store in the clear.
    public_key: str | None = None

    @property
    def usable_for_opening(self) -> bool:
        return self.state in OPENING_STATES and self.wrapped is not None


@attrs.frozen(slots=True)
class RotationPolicy:
    """Rotate every ``period_seconds``; announce ``notice_seconds`` ahead.

    At ``due - notice`` the scheduler creates the next version as pre-active
    and fires the rotation-due event; at ``due`` it activates it.
    """

    period_seconds: int
    notice_seconds: int = 0

    def __attrs_post_init__(self) -> None:
        if self.period_seconds < 60:
            raise ValueError("rotation period must be at least 60 seconds")
        if not 0 <= self.notice_seconds < self.period_seconds:
            raise ValueError("notice must be shorter than the rotation period")


@attrs.frozen(slots=True)
class HistoryEntry:
    """One line of a key's history: what happened, to which version, and why."""

    at: float
    action: str
    actor: str
    version: int | None = None
    from_state: str | None = None
    to_state: str | None = None
    reason: str | None = None


@attrs.frozen(slots=True)
class Key:
    """A named working key and all its versions."""

    id: str  # immutable random id, bound into every AAD
    name: str
    algorithm: str  # stable algorithm id, e.g. "aes-256-gcm"
    purpose: Purpose
    created_at: float
    status: KeyStatus = KeyStatus.ENABLED
    primary_version: int = FIRST_VERSION
    min_decryption_version: int = FIRST_VERSION
    versions: tuple[KeyVersion, ...] = ()
    rotation_policy: RotationPolicy | None = None
    next_rotation_at: float | None = None
    deletion_at: float | None = None
    description: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    history: tuple[HistoryEntry, ...] = ()
    # Storage revision this value was read at; 0 = never stored.
    revision: int = attrs.field(default=0, eq=False)

    def version(self, number: int) -> KeyVersion | None:
        for v in self.versions:
            if v.number == number:
                return v
        return None

    @property
    def primary(self) -> KeyVersion:
        v = self.version(self.primary_version)
        assert v is not None, "a key always has its primary version"
        return v

    @property
    def latest_version(self) -> int:
        return max(v.number for v in self.versions)

    def replace_version(self, new: KeyVersion) -> tuple[KeyVersion, ...]:
        return tuple(new if v.number == new.number else v for v in self.versions)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description with no secret in it (no wrapped blobs, no history)."""
        from .records import key_summary  # records builds on this module

        return key_summary(self)

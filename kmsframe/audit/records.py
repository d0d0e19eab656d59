"""What one audit record says: who did what, to which key and version, with
what outcome, from where and when — never key material or plaintext.

An :class:`AuditEvent` is built from typed fields only, so no caller can slip
a payload into the log; ``detail`` is a short operator-facing reason written
by kmsframe itself (a denial's reason, an error code).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import attrs

from ..authorization import Principal

OK = "ok"
# A management call's write-ahead record, written durably before the call
# runs; its outcome record (same request_id) follows. Not an outcome: count
# calls by their other records.
STARTED = "started"
# The management call being served, so that the key changes it makes are
# recorded with its request id (set by the transport, see kmsframe.http.access).
current_request_id: ContextVar[str | None] = ContextVar("kmsframe_request_id", default=None)


@attrs.frozen(slots=True)
class AuditEvent:
    at: float
    actor: str  # "app:billing", "user:alice", "system:system"
    action: str  # "encrypt", "keys.rotate", "login", "approvals.approve" ...
    outcome: str = OK  # "ok" or an error code ("permission_denied" ...)
    key: str | None = None
    version: int | None = None
    source: str | None = None
    target: str | None = None  # a user, an app, an approval request id
    detail: str | None = None
    request_id: str | None = None  # shared by the records of one management call

    @classmethod
    def of(cls, principal: Principal, action: str, *, at: float, **fields: Any) -> "AuditEvent":
        return cls(at=at, actor=str(principal), action=action, **fields)

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields, leaving out the empty ones."""
        return {k: v for k, v in (
            ("at", self.at), ("actor", self.actor), ("action", self.action),
            ("outcome", self.outcome), ("key", self.key), ("version", self.version),
            ("source", self.source), ("target", self.target), ("detail", self.detail),
            ("request_id", self.request_id),
        ) if v is not None}


def app_of(record: dict[str, Any]) -> str | None:
    """The app a record concerns: its actor if an app, else its target app."""
    actor = record.get("actor", "")
    if actor.startswith("app:"):
        return actor[4:]
    return None

"""Who is asking, and the question put to ``kms_authorize`` plugins."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import attrs


@attrs.frozen(slots=True)
class Principal:
    """An authenticated caller: an app, a human user, or the system itself."""

    id: str
    kind: str  # "app" | "user" | "system"
    roles: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


# The calling client's address, set by the transport for the current request
# and read only when a kms_authorize plugin is asked (never on the fast path).
request_source: ContextVar[str | None] = ContextVar("kmsframe_request_source", default=None)

SYSTEM = Principal(id="system", kind="system", roles=frozenset({"system"}))


@attrs.frozen(slots=True)
class AuthorizationRequest:
    """What ``kms_authorize`` implementations judge.

    ``operation`` is a crypto operation (``"encrypt"``...) or a management one
    (``"keys.rotate"``...). ``conditions`` are the key's per-key conditions
    (source ranges, time windows, rate limits), for plugins that enforce them.
    """

    principal: Principal
    operation: str
    key_name: str | None = None
    version: int | None = None
    source: str | None = None
    conditions: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Denial:
    """A veto. ``reason`` goes to the audit log; callers see only ``code``'s text."""

    reason: str
    code: str = "permission_denied"  # or "rate_limited"

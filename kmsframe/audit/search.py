"""Find audit records by key, app, user, action, outcome, request and time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from ..errors import InvalidRequest


@attrs.frozen(slots=True)
class AuditQuery:
    key: str | None = None
    app: str | None = None
    user: str | None = None
    action: str | None = None
    outcome: str | None = None
    # One HTTP management call's records share it: started, changes, outcome.
    request_id: str | None = None
    since: float | None = None
    until: float | None = None
    include_seals: bool = False
    limit: int = 100

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.limit, int) or not 1 <= self.limit <= 10_000:
            raise InvalidRequest("limit must be between 1 and 10000")

    def matches(self, r: Mapping[str, Any]) -> bool:
        if r.get("type") == "seal":
            return self.include_seals
        actor = r.get("actor", "")
        if self.key is not None and r.get("key") != self.key:
            return False
        if self.app is not None and actor != f"app:{self.app}" and r.get("target") != self.app:
            return False
        if self.user is not None and actor != f"user:{self.user}" and r.get("target") != self.user:
            return False
        if self.action is not None and r.get("action") != self.action:
            return False
        if self.outcome is not None and r.get("outcome") != self.outcome:
            return False
        if self.request_id is not None and r.get("request_id") != self.request_id:
            return False
        at = r.get("at", 0)
        if self.since is not None and at < self.since:
            return False
        if self.until is not None and at >= self.until:
            return False
        return True


def search(records: Iterable[Mapping[str, Any]], query: AuditQuery) -> list[Mapping[str, Any]]:
    """The newest ``query.limit`` matching records, newest first."""
    found: list[Mapping[str, Any]] = []
    for r in _valid(records):
        if query.matches(r):
            found.append(r)
            if len(found) > query.limit * 4:  # bound memory on huge logs
                found = found[-query.limit:]
    found.sort(key=lambda r: r.get("at", 0), reverse=True)
    return found[:query.limit]


def _valid(records: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for r in records:
        if "_corrupt" not in r:
            yield r

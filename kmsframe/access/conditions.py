"""Per-key conditions — source ranges, time windows, rate limits — as a
built-in ``kms_authorize`` plugin.

A key's ``conditions`` (set by a key admin) look like::

    {"source_ranges": ["10.0.0.0/8", "2001:db8::/32"],
     "time_window": {"start": "08:00", "end": "20:00", "days": ["mon", "tue"],
                     "utc_offset": "+08:00"},
     "rate_limit": {"per_second": 100, "burst": 200}}

This plugin is registered like any third-party authorizer (as pytest
registers its default plugins), so a plugin can add its own rules beside it:
it receives the same :class:`~kmsframe.authorization.AuthorizationRequest`,
with the key's ``conditions`` and the caller's ``source`` address. Unknown
condition names are kept and left to such plugins; this one ignores them.
The key service asks the hook on the crypto path only for keys that have
conditions, so keys without any pay nothing.

Rate limits are a token bucket per (key, caller). A deployment opened by
``kmsframe serve`` keeps them in a table every worker process of the node
shares (:class:`~kmsframe.access.ratelimit.SharedBuckets`), so "100/s" is
100/s per node whatever the number of workers; across nodes the limit stays
per node. Without a shared table (a single process) they live in memory.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..authorization import AuthorizationRequest, Denial
from ..errors import InvalidRequest
from ..hookspecs import hookimpl
from .ratelimit import LocalBuckets, RateBuckets

PLUGIN_NAME = "kmsframe.conditions"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_OFFSET = re.compile(r"([+-])([01]\d|2[0-3]):([0-5]\d)")
_CRYPTO_OPS = frozenset({"encrypt", "decrypt", "rewrap", "datakey", "sign", "verify", "mac"})


def _minutes(text: Any, what: str) -> int:
    m = _HHMM.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidRequest(f"{what} must be HH:MM")
    return int(m[1]) * 60 + int(m[2])


def _offset(text: Any) -> timezone:
    m = _OFFSET.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidRequest("time_window.utc_offset must be like +08:00")
    delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
    return timezone(delta if m[1] == "+" else -delta)


def validate_conditions(conditions: Mapping[str, Any]) -> dict[str, Any]:
    """Check the built-in conditions' shape; returns a JSON-ready copy."""
    if not isinstance(conditions, Mapping):
        raise InvalidRequest("conditions must be an object")
    out = dict(conditions)
    ranges = out.get("source_ranges")
    if ranges is not None:
        if not isinstance(ranges, list) or not ranges:
            raise InvalidRequest("source_ranges must be a non-empty list of CIDR ranges")
        for r in ranges:
            try:
                ipaddress.ip_network(r, strict=False)
            except (TypeError, ValueError):
                raise InvalidRequest(f"{r!r} is not a CIDR range") from None
    window = out.get("time_window")
    if window is not None:
        if not isinstance(window, Mapping):
            raise InvalidRequest("time_window must be an object")
        _minutes(window.get("start"), "time_window.start")
        _minutes(window.get("end"), "time_window.end")
        _offset(window.get("utc_offset", "+00:00"))
        days = window.get("days", list(DAYS))
        if not isinstance(days, list) or not set(days) <= set(DAYS) or not days:
            raise InvalidRequest(f"time_window.days must be a list of {', '.join(DAYS)}")
    limit = out.get("rate_limit")
    if limit is not None:
        if not isinstance(limit, Mapping):
            raise InvalidRequest("rate_limit must be an object")
        rate, burst = limit.get("per_second"), limit.get("burst", limit.get("per_second"))
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0 or \
                not isinstance(burst, (int, float)) or isinstance(burst, bool) or burst < 1:
            raise InvalidRequest("rate_limit needs per_second > 0 and burst >= 1")
    return out


def in_window(window: Mapping[str, Any], at: float) -> bool:
    local = datetime.fromtimestamp(at, _offset(window.get("utc_offset", "+00:00")))
    if DAYS[local.weekday()] not in window.get("days", DAYS):
        return False
    minute = local.hour * 60 + local.minute
    start = _minutes(window["start"], "start")
    end = _minutes(window["end"], "end")
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # a window across midnight


class ConditionsAuthorizer:
    """The built-in judge of per-key conditions (one instance per deployment)."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 buckets: RateBuckets | None = None) -> None:
        self.clock = clock
        # The deployment replaces these with the node's shared table.
        self.buckets: RateBuckets = buckets or LocalBuckets(monotonic)

    @hookimpl
    def kms_authorize(self, request: AuthorizationRequest) -> Denial | None:
        """Deny crypto calls that break the key's source, time or rate conditions."""
        conditions = request.conditions
        if not conditions or request.operation not in _CRYPTO_OPS:
            return None
        ranges = conditions.get("source_ranges")
        if ranges is not None and not _source_in(request.source, ranges):
            return Denial(f"source {request.source!r} is outside the key's source ranges")
        window = conditions.get("time_window")
        if window is not None and not in_window(window, self.clock()):
            return Denial("outside the key's time window")
        limit = conditions.get("rate_limit")
        if limit is not None and not self._take(request, limit):
            return Denial(f"rate limit of key {request.key_name!r} exceeded", code="rate_limited")
        return None

    def _take(self, request: AuthorizationRequest, limit: Mapping[str, Any]) -> bool:
        rate = float(limit["per_second"])
        burst = float(limit.get("burst", rate))
        return self.buckets.take(f"{request.key_name or ''}\0{request.principal}", rate, burst)


def _source_in(source: str | None, ranges: list[str]) -> bool:
    if not source:
        return False  # unknown source: a range condition cannot be met
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(r, strict=False) for r in ranges)

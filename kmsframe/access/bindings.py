"""Key-to-app bindings and per-key conditions, as pure rules over keys.

A key lists the apps allowed to use it and, per app, the operations
(``encrypt``, ``decrypt``, ``rewrap``, ``datakey``, ``sign``, ``verify``,
``mac``); anything else is denied. Bindings live in the key's own record, so
changing one is a key change: it is saved with the key's revision check,
bumps the change signal (every worker drops its cached copy at once) and is
written to the key's history. The key service enforces them on the crypto
path with one dict lookup (``LoadedKey.apps``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..errors import InvalidRequest, NotFound
from ..lifecycle import Change
from ..model import OPERATIONS_BY_PURPOSE, HistoryEntry, Key, KeyStatus, Operation
from .conditions import validate_conditions

_APP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_app_id(app_id: str) -> str:
    if not isinstance(app_id, str) or not 1 <= len(app_id) <= 128 or not set(app_id) <= _APP_CHARS:
        raise InvalidRequest("app ids are 1-128 letters, digits, '-', '_' and '.'")
    return app_id


def parse_operations(key: Key, operations: Iterable[str]) -> frozenset[Operation]:
    """Operation names → operations this key's purpose supports."""
    if isinstance(operations, (str, bytes)) or not isinstance(operations, Iterable):
        raise InvalidRequest("operations must be a list of operation names")
    ops = set()
    for name in operations:
        try:
            ops.add(Operation(name))
        except ValueError:
            raise InvalidRequest(
                f"unknown operation {name!r} (known: "
                f"{', '.join(o.value for o in Operation)})") from None
    if not ops:
        raise InvalidRequest("a binding needs at least one operation; remove it instead")
    possible = OPERATIONS_BY_PURPOSE[key.purpose]
    wrong = ops - possible
    if wrong:
        raise InvalidRequest(
            f"a {key.purpose.value} key cannot {', '.join(sorted(o.value for o in wrong))}")
    return frozenset(ops)


def _live(key: Key) -> None:
    if key.status is KeyStatus.DESTROYED:
        raise InvalidRequest("the key is destroyed")


def bind(key: Key, app_id: str, operations: Iterable[str], *, now: float, actor: str) -> Change:
    """Allow ``app_id`` the ``operations`` on ``key`` (replacing its binding)."""
    _live(key)
    check_app_id(app_id)
    ops = parse_operations(key, operations)
    apps = {**key.apps, app_id: ops}
    entry = HistoryEntry(at=now, action="binding.set", actor=actor,
                         reason=f"app {app_id}: {', '.join(sorted(o.value for o in ops))}")
    return attrs.evolve(key, apps=apps, history=(*key.history, entry)), []


def unbind(key: Key, app_id: str, *, now: float, actor: str) -> Change:
    """Remove ``app_id``'s binding; it can no longer use the key at all."""
    if app_id not in key.apps:
        raise NotFound(f"app {app_id!r} is not bound to key {key.name!r}")
    apps = {a: ops for a, ops in key.apps.items() if a != app_id}
    entry = HistoryEntry(at=now, action="binding.removed", actor=actor, reason=f"app {app_id}")
    return attrs.evolve(key, apps=apps, history=(*key.history, entry)), []


def set_conditions(key: Key, conditions: Mapping[str, Any], *, now: float, actor: str) -> Change:
    """Replace the key's conditions (validated; ``{}`` removes them)."""
    _live(key)
    checked = validate_conditions(conditions)
    entry = HistoryEntry(at=now, action="conditions.set", actor=actor,
                         reason=", ".join(sorted(checked)) or "none")
    return attrs.evolve(key, conditions=checked, history=(*key.history, entry)), []

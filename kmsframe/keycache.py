"""Unwrapped working keys, held in memory only: an LRU with a time-to-live.

An entry is a key record together with loaded :class:`KeyHandle` objects for
the versions used so far and the pre-computed parts of the encrypt path
(primary version prefix, associated data). Entries are dropped on TTL expiry,
when the LRU overflows, and whenever any management change is signalled, so
a rotation or state change is seen by the next request. Nothing is ever
written to disk from here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from time import monotonic

from .ciphertext import data_aad
from .errors import KmsError
from .model import Key, KeyStatus, Purpose
from .providers import KeyHandle


class LoadedKey:
    __slots__ = (
        "key",
        "handles",
        "deadline",
        "blocked",
        "primary_version",
        "primary_prefix",
        "primary_handle",
        "primary_aad",
        "apps",
        "hooked",
    )

    def __init__(self, key: Key, deadline: float, blocked: KmsError | None,
                 hooked: bool = False) -> None:
        self.key = key
        self.handles: dict[int, KeyHandle] = {}
        self.deadline = deadline
        # The error every use of this key raises (disabled, pending deletion...).
        self.blocked = blocked
        self.primary_version = key.primary_version
        self.primary_prefix = "%05d" % key.primary_version
        self.primary_handle: KeyHandle | None = None
        self.primary_aad = data_aad(key.id, key.primary_version)
        # Key-to-app bindings, looked up per app call: app id -> operations.
        self.apps = key.apps
        # Whether crypto calls must ask the kms_authorize plugins (a
        # third-party authorizer is loaded, or the key has conditions).
        self.hooked = hooked or bool(key.conditions)

    @property
    def purpose(self) -> Purpose:
        return self.key.purpose

    @property
    def enabled(self) -> bool:
        return self.key.status is KeyStatus.ENABLED


class KeyCache:
    """LRU + TTL map from key name to :class:`LoadedKey`."""

    def __init__(self, capacity: int = 10_000, ttl_seconds: float = 300.0,
                 clock: Callable[[], float] = monotonic) -> None:
        if capacity < 1 or ttl_seconds <= 0:
            raise ValueError("cache capacity and TTL must be positive")
        self.capacity = capacity
        self.ttl = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[str, LoadedKey] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, name: str) -> LoadedKey | None:
        entry = self._entries.get(name)
        if entry is None:
            self.misses += 1
            return None
        if entry.deadline < self.clock():
            del self._entries[name]
            self.misses += 1
            return None
        self._entries.move_to_end(name)
        self.hits += 1
        return entry

    def put(self, entry: LoadedKey) -> None:
        self._entries[entry.key.name] = entry
        self._entries.move_to_end(entry.key.name)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def new_deadline(self) -> float:
        return self.clock() + self.ttl

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            self._entries.clear()
        else:
            self._entries.pop(name, None)

    def __len__(self) -> int:
        return len(self._entries)

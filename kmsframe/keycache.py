"""Unwrapped working keys, held in memory only: an LRU with a time-to-live.

Recency is tracked the CLOCK way (an approximation of LRU used by operating
systems' page caches): a hit only bumps the entry's ``uses`` counter, which
costs the encrypt path one attribute write instead of a reorder; eviction
gives every entry used since the last sweep a second chance.

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
        "encrypt_ready",
        "primary_encrypt",
        "uses",
        "uses_at_sweep",
        "openers",
    )

    def __init__(self, key: Key, deadline: float,
                 blocked: tuple[type[KmsError], str] | None) -> None:
        self.key = key
        self.handles: dict[int, KeyHandle] = {}
        self.deadline = deadline
        # The error every use of this key raises (disabled, pending deletion...),
        # kept as (class, message) so each request raises a fresh exception.
        self.blocked = blocked
        self.primary_version = key.primary_version
        self.primary_prefix = "%05d" % key.primary_version
        self.primary_handle: KeyHandle | None = None
        self.primary_aad = data_aad(key.id, key.primary_version)
        # Set once the primary handle is loaded and the key may encrypt: the
        # encrypt fast path then needs no other check.
        self.encrypt_ready = False
        self.primary_encrypt: Callable[[bytes, bytes], bytes] | None = None
        self.uses = 0
        self.uses_at_sweep = 0
        # version → (decrypt function, AAD without context): the decrypt fast path.
        self.openers: dict[int, tuple[Callable[[bytes, bytes], bytes], bytes]] = {}

    def raise_if_blocked(self) -> None:
        if self.blocked is not None:
            cls, message = self.blocked
            raise cls(message)

    @property
    def purpose(self) -> Purpose:
        return self.key.purpose

    @property
    def enabled(self) -> bool:
        return self.key.status is KeyStatus.ENABLED


class KeyCache:
    """Name → :class:`LoadedKey`, bounded (CLOCK-approximated LRU) and with a TTL.

    Readers on the hot path may look entries up in ``entries`` directly; they
    must then check ``deadline`` themselves and add 1 to ``uses``.
    """

    def __init__(self, capacity: int = 10_000, ttl_seconds: float = 300.0,
                 clock: Callable[[], float] = monotonic) -> None:
        if capacity < 1 or ttl_seconds <= 0:
            raise ValueError("cache capacity and TTL must be positive")
        self.capacity = capacity
        self.ttl = ttl_seconds
        self.clock = clock
        self.entries: OrderedDict[str, LoadedKey] = OrderedDict()
        self.misses = 0
        self._retired_hits = 0

    @property
    def hits(self) -> int:
        return self._retired_hits + sum(e.uses for e in list(self.entries.values()))

    def get(self, name: str) -> LoadedKey | None:
        """The live entry for ``name`` (counted as a hit or a miss)."""
        entry = self.entries.get(name)
        if entry is None or entry.deadline < self.clock():
            if entry is not None:
                self._drop(name)
            self.misses += 1
            return None
        entry.uses += 1
        return entry

    def put(self, entry: LoadedKey) -> None:
        self._drop(entry.key.name)
        self.entries[entry.key.name] = entry
        while len(self.entries) > self.capacity:
            self._evict_one()

    def _evict_one(self) -> None:
        # Second chance: entries used since the last sweep go to the back.
        for _ in range(len(self.entries)):
            name, entry = next(iter(self.entries.items()))
            if entry.uses != entry.uses_at_sweep:
                entry.uses_at_sweep = entry.uses
                self.entries.move_to_end(name)
                continue
            self._drop(name)
            return
        self._drop(next(iter(self.entries)))

    def _drop(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is not None:
            self._retired_hits += entry.uses

    def new_deadline(self) -> float:
        return self.clock() + self.ttl

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            for key in list(self.entries):
                self._drop(key)
        else:
            self._drop(name)

    def __len__(self) -> int:
        return len(self.entries)

"""Token buckets for per-key rate limits: one per worker process, or one per
node shared by every worker process through a file in the data directory.

:class:`LocalBuckets` keeps its buckets in process memory (tests, single
processes). :class:`SharedBuckets` keeps them in ``<data_dir>/ratelimit.buckets``,
memory-mapped by every process of the node, so "100/s" means 100/s for the
node however many workers ``kmsframe serve`` runs. Only calls on keys with a
``rate_limit`` condition touch it; the file is opened on first use.

File layout (little-endian)::

    header  64 bytes   magic b"KMSRLB01", groups u32, ways u32, zero padding
    slots   groups x ways x 48 bytes, each:
            digest   16 bytes  BLAKE2b-128 of "<key>\\0<caller>" (zero: free)
            tokens   f64       tokens left at ``updated``
            updated  f64       CLOCK_MONOTONIC seconds (system-wide on Linux)
            rate     f64       tokens per second  } as last used, so another
            burst    f64       bucket capacity    } process can tell it is full

A bucket lives in one group of ``ways`` slots chosen by its digest. A call
locks that group's byte range with ``fcntl.lockf`` (a POSIX record lock: the
kernel drops it when its process dies, so a crashed worker never leaves the
table locked) and, for the threads of one process, a ``threading.Lock``.
A slot whose bucket has refilled to its burst holds no information, so a new
bucket may take it over. When every slot of the group holds a bucket that is
not full, the call falls back to a bucket in this process with rate/N and
burst/N (at least one token), N being the processes currently attached to the
table, so the node stays within the limit (rounding aside) and only that
bucket's precision suffers (and it starts full again when it gets a slot); a
warning is logged once per process.

POSIX record locks belong to a process, and closing *any* descriptor of the
file releases all of that process's locks on it; so a process maps each table
file once (:func:`_table`), whatever the number of deployments opened in it.
After ``fork`` the child does not inherit the parent's locks and must not use
its table: it opens its own on first use (``os.register_at_fork``).

Across nodes the limit stays per node: the file is local to the host.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import math
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

MAGIC = b"KMSRLB01"
_HEADER = struct.Struct("<8sII")
HEADER_SIZE = 64
_SLOT = struct.Struct("<16sdddd")
SLOT_SIZE = _SLOT.size  # 48
_FREE = bytes(16)
DEFAULT_GROUPS = 2048  # x 8 ways x 48 bytes: 768 KiB, sparse until used
DEFAULT_WAYS = 8
# One presence byte per attached process, locked while it is attached, far
# beyond the end of the file (locks may cover bytes that do not exist).
_PRESENCE = 1 << 40
_MAX_PROCESSES = 1024
_COUNT_EVERY = 1.0  # seconds between recounts of the attached processes
_PLACES = 65536  # (key, caller) pairs whose slot digest a process remembers


class RateBuckets(Protocol):
    def take(self, slot: str, rate: float, burst: float) -> bool:
        """Take one token from bucket ``slot`` (refilling at ``rate`` per
        second up to ``burst``); False when it has none."""
        ...

    def close(self) -> None: ...


class LocalBuckets:
    """Buckets in this process's memory."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, slot: str, rate: float, burst: float) -> bool:
        with self._lock:
            now = self.monotonic()
            bucket = self._buckets.get(slot)
            if bucket is None:
                bucket = self._buckets[slot] = [burst, now]
            tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if tokens < 1:
                bucket[0] = tokens
                return False
            bucket[0] = tokens - 1
            return True

    def close(self) -> None:
        pass


def digest_of(slot: str) -> bytes:
    d = hashlib.blake2b(slot.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return d if d != _FREE else b"\x01" + d[1:]  # all-zero marks a free slot


def refill(tokens: float, updated: float, rate: float, burst: float, now: float) -> float:
    """Tokens in a bucket at ``now``; garbage (a torn write, a clock from an
    earlier boot) never yields more than ``burst`` nor fewer than zero."""
    elapsed = now - updated
    if not elapsed >= 0:  # also NaN
        elapsed = 0.0
    tokens += elapsed * rate
    if not tokens >= 0:  # also NaN
        return 0.0
    return min(burst, tokens)


class _Table:
    """One process's mapping of one table file (see :func:`_table`)."""

    def __init__(self, path: Path, groups: int, ways: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self.groups, self.ways = self._initialise(groups, ways)
            self.map = mmap.mmap(self.fd, HEADER_SIZE + self.groups * self.ways * SLOT_SIZE)
        except BaseException:
            os.close(self.fd)
            raise
        self.group_size = self.ways * SLOT_SIZE
        self.lock = threading.Lock()
        self.refs = 0
        self.presence = self._attach()
        self._counted = (-math.inf, 1)

    def _initialise(self, groups: int, ways: int) -> tuple[int, int]:
        """Write the header once; a file that already has one keeps its
        geometry, so processes started with other defaults still agree."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX, HEADER_SIZE, 0)
        try:
            head = os.pread(self.fd, _HEADER.size, 0)
            if len(head) == _HEADER.size:
                magic, g, w = _HEADER.unpack(head)
                size = HEADER_SIZE + g * w * SLOT_SIZE
                if magic == MAGIC and 0 < g <= 1 << 20 and 0 < w <= 64 and \
                        os.fstat(self.fd).st_size >= size:
                    return g, w
            # New, truncated or foreign: start empty (all buckets full). Never
            # shrink the file: another process touching a page beyond its end
            # would die of SIGBUS.
            size = HEADER_SIZE + groups * ways * SLOT_SIZE
            if os.fstat(self.fd).st_size:
                os.pwrite(self.fd, bytes(size), 0)
            else:
                os.ftruncate(self.fd, size)
            os.pwrite(self.fd, _HEADER.pack(MAGIC, groups, ways), 0)
            return groups, ways
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, HEADER_SIZE, 0)

    def _attach(self) -> int | None:
        for i in range(_MAX_PROCESSES):
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _PRESENCE + i)
                return i
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
        return None  # more processes than bytes: this one still counts itself

    def processes(self) -> int:
        """Processes attached to the table now (recounted at most once a second)."""
        at, n = self._counted
        now = time.monotonic()
        if now - at < _COUNT_EVERY:
            return n
        n = 1
        for i in range(_MAX_PROCESSES):
            if i == self.presence:
                continue  # our own lock never conflicts with us; unlocking it would drop it
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, _PRESENCE + i)
            except OSError:
                n += 1
            else:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, _PRESENCE + i)
        self._counted = (now, n)
        return n

    def group_of(self, digest: bytes) -> int:
        """Where the group of bucket ``digest`` starts in the file."""
        return HEADER_SIZE + int.from_bytes(digest[:8], "little") % self.groups * self.group_size

    def take(self, digest: bytes, start: int, rate: float, burst: float,
             monotonic: Callable[[], float]) -> bool | None:
        """One token from the bucket ``digest`` (group at ``start``); None if
        the group is full."""
        end = start + self.group_size
        m = self.map
        with self.lock:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, self.group_size, start)
            try:
                # Read under the lock: a time read before waiting for it could
                # be older than the slot's and refill the same interval twice.
                now = monotonic()
                at = m.find(digest, start, end)
                while at >= 0 and (at - start) % SLOT_SIZE:
                    at = m.find(digest, at + 1, end)  # a digest is only at a slot's start
                if at >= 0:
                    _, tokens, updated, _, _ = _SLOT.unpack_from(m, at)
                    tokens = refill(tokens, updated, rate, burst, now)
                else:
                    at = self._reclaimable(start, end, now)
                    if at < 0:
                        return None
                    tokens = burst
                ok = tokens >= 1
                _SLOT.pack_into(m, at, digest, tokens - 1 if ok else tokens, now, rate, burst)
                return ok
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, self.group_size, start)

    def _reclaimable(self, start: int, end: int, now: float) -> int:
        """A free slot, or one whose bucket has refilled to its burst: -1 if none."""
        for at in range(start, end, SLOT_SIZE):
            digest, tokens, updated, rate, burst = _SLOT.unpack_from(self.map, at)
            if digest == _FREE or not (0 <= updated <= now) or \
                    not tokens + (now - updated) * rate < burst:  # NaN: reclaim
                return at
        return -1

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)  # releases this process's locks on the file


_tables: dict[str, _Table] = {}
_tables_lock = threading.Lock()
_generation = 0  # bumped in a forked child: tables from before the fork are the parent's


def _after_fork() -> None:
    global _tables, _tables_lock, _generation
    for table in _tables.values():
        try:
            table.close()  # the child holds no locks on it; the parent keeps its own
        except (OSError, ValueError):
            pass
    _tables, _tables_lock = {}, threading.Lock()
    _generation += 1


os.register_at_fork(after_in_child=_after_fork)


def _table(path: Path, groups: int, ways: int) -> _Table:
    key = str(path.resolve())
    with _tables_lock:
        table = _tables.get(key)
        if table is None:
            table = _tables[key] = _Table(path, groups, ways)
        table.refs += 1
        return table


def _release(table: _Table) -> None:
    with _tables_lock:
        table.refs -= 1
        if table.refs == 0:
            for key, t in list(_tables.items()):
                if t is table:
                    del _tables[key]
            table.close()


class SharedBuckets:
    """Buckets shared by every process that uses the same ``path``."""

    def __init__(self, path: Path, *, groups: int = DEFAULT_GROUPS, ways: int = DEFAULT_WAYS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.groups = groups
        self.ways = ways
        # Must be a clock every process shares: CLOCK_MONOTONIC is system-wide.
        self.monotonic = monotonic
        self._table: _Table | None = None
        self._generation = -1
        self._overflow = LocalBuckets(monotonic)
        self._warned = False
        self._places: dict[str, tuple[bytes, int]] = {}  # slot -> (digest, group start)

    def take(self, slot: str, rate: float, burst: float) -> bool:
        table = self._table
        if table is None or self._generation != _generation:
            table = self._open()
        place = self._places.get(slot)
        if place is None:
            if len(self._places) >= _PLACES:
                self._places.clear()
            digest = digest_of(slot)
            place = self._places[slot] = (digest, table.group_of(digest))
        ok = table.take(place[0], place[1], rate, burst, self.monotonic)
        if ok is not None:
            return ok
        n = table.processes()
        if not self._warned:
            self._warned = True
            log.warning("rate-limit table %s: a group is full; some buckets fall back to "
                        "per-process buckets at 1/%d of their rate", self.path, n)
        return self._overflow.take(slot, rate / n, max(1.0, burst / n))

    def _open(self) -> _Table:
        if self._table is not None and self._generation == _generation:
            return self._table
        self._table = _table(self.path, self.groups, self.ways)
        self._generation = _generation
        self._places.clear()  # another process may have set the file's geometry
        return self._table

    def close(self) -> None:
        table, self._table = self._table, None
        if table is not None and self._generation == _generation:
            _release(table)

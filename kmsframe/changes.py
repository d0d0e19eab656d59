"""How one worker process learns that another changed a key.

After every stored management change the service calls ``bump()``; before
using a cached key it compares ``current()`` with the value it last saw and
drops its cache when they differ. The shared-file signal is an 8-byte counter
in a memory-mapped file in the data directory, so the check on the hot path
is a memory read (about 100 ns) and a change is visible to every worker on the
host as soon as the management call returns.

Other hosts learn through the store (:mod:`kmsframe.node_sync`): each signal
also keeps the last *store generation* this host has taken in, so that when
a poller sees the store's generation move, exactly one bump happens per host
however many workers poll (``observe_remote``), and a host's own change does
not bump it twice (``note_own``).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_COUNTER = struct.Struct("<Q")


class LocalChangeSignal:
    """Single-process signal: an in-memory counter."""

    def __init__(self) -> None:
        # ``view`` is what the hot path compares: its first 8 bytes change on bump.
        self.view = bytearray(_COUNTER.size * 2)
        self._lock = threading.Lock()

    def current(self) -> int:
        return _COUNTER.unpack_from(self.view, 0)[0]

    def bump(self) -> None:
        with self._lock:
            _bump(self.view)

    def observe_remote(self, generation: int) -> bool:
        """Bump if the store's generation moved since this host last took it in."""
        with self._lock:
            return _observe(self.view, generation)

    def note_own(self, generation: int) -> None:
        """This host's own change moved the store to ``generation`` (already bumped)."""
        with self._lock:
            _note_own(self.view, generation)

    def close(self) -> None:
        pass


def _bump(buffer: Any) -> None:
    _COUNTER.pack_into(buffer, 0, _COUNTER.unpack_from(buffer, 0)[0] + 1)


def _observe(buffer: Any, generation: int) -> bool:
    if _COUNTER.unpack_from(buffer, _COUNTER.size)[0] == generation:
        return False
    _COUNTER.pack_into(buffer, _COUNTER.size, generation)
    _bump(buffer)
    return True


def _note_own(buffer: Any, generation: int) -> None:
    seen = _COUNTER.unpack_from(buffer, _COUNTER.size)[0]
    _COUNTER.pack_into(buffer, _COUNTER.size, generation)
    if seen != generation - 1:
        # Another host changed something in between that this host has not
        # taken in yet: the bump our own change made may predate it.
        _bump(buffer)


class SharedFileChangeSignal:
    """A counter shared by every process that maps the same file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNTER.size:
                os.ftruncate(fd, mmap.PAGESIZE)
            self._map = mmap.mmap(fd, mmap.PAGESIZE)
            self.view = self._map
        finally:
            os.close(fd)
        self._lock_path = str(path) + ".lock"

    def current(self) -> int:
        return _COUNTER.unpack_from(self._map, 0)[0]

    def bump(self) -> None:
        # The lock makes read-increment-write atomic across processes.
        with self._locked():
            _bump(self._map)

    def observe_remote(self, generation: int) -> bool:
        """Bump if the store's generation moved since any worker here took it in."""
        with self._locked():
            return _observe(self._map, generation)

    def note_own(self, generation: int) -> None:
        """This host's own change moved the store to ``generation`` (already bumped)."""
        with self._locked():
            _note_own(self._map, generation)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def close(self) -> None:
        self._map.close()

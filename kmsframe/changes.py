"""How one worker process learns that another changed a key.

After every stored management change the service calls ``bump()``; before
using a cached key it compares ``current()`` with the value it last saw and
drops its cache when they differ. The shared-file signal is an 8-byte counter
in a memory-mapped file in the data directory, so the check on the hot path
is a memory read (about 100 ns) and a change is visible to every worker on the
host as soon as the management call returns. Remote nodes poll the store's
``change_counter()`` instead (see ``docs/formats.md``).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_COUNTER = struct.Struct("<Q")


class LocalChangeSignal:
    """Single-process signal: an in-memory counter."""

    def __init__(self) -> None:
        # ``view`` is what the hot path compares: its first 8 bytes change on bump.
        self.view = bytearray(_COUNTER.size)

    def current(self) -> int:
        return _COUNTER.unpack_from(self.view, 0)[0]

    def bump(self) -> None:
        _COUNTER.pack_into(self.view, 0, self.current() + 1)

    def close(self) -> None:
        pass


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
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _COUNTER.pack_into(self._map, 0, _COUNTER.unpack_from(self._map, 0)[0] + 1)

    def close(self) -> None:
        self._map.close()

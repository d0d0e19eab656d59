"""Random nonces drawn from the OS CSPRNG in batches.

``os.urandom(12)`` is one ``getrandom`` system call per message, about a
third of the cost of encrypting 64 bytes with AES-GCM. A :class:`NoncePool`
asks the OS for many nonces at once and hands them out one by one; each nonce
is still 96 (or N) bits from the same CSPRNG, used once.

Two things would make a pool reuse a nonce, and both are prevented:

* two threads taking the same nonce — ``list.pop`` is a single atomic
  operation, so each nonce leaves the list exactly once;
* a forked child inheriting the parent's unused nonces — every pool empties
  itself in the child (``os.register_at_fork``).
"""

from __future__ import annotations

import os
import weakref

_pools: weakref.WeakSet[NoncePool] = weakref.WeakSet()


class NoncePool:
    __slots__ = ("size", "batch", "_nonces", "__weakref__")

    def __init__(self, size: int = 12, batch: int = 512) -> None:
        if not 8 <= size <= 64 or batch < 1:
            raise ValueError("nonce size must be 8-64 bytes and batch positive")
        self.size = size
        self.batch = batch
        self._nonces: list[bytes] = []
        _pools.add(self)

    def take(self) -> bytes:
        """A fresh random nonce, never handed out before."""
        try:
            return self._nonces.pop()
        except IndexError:
            return self._refill()

    def _refill(self) -> bytes:
        size, block = self.size, os.urandom(self.size * self.batch)
        fresh = [block[i:i + size] for i in range(0, len(block), size)]
        nonce = fresh.pop()
        # Extend, not replace: another thread may be refilling at the same time;
        # every nonce from either block is still handed out at most once.
        self._nonces.extend(fresh)
        return nonce

    def clear(self) -> None:
        self._nonces = []


def _forget_in_child() -> None:
    for pool in list(_pools):
        pool.clear()


os.register_at_fork(after_in_child=_forget_in_child)

from __future__ import annotations

import copy
import pickle

import pytest

from kmsframe.keycache import KeyCache, LoadedKey
from kmsframe.model import Key, Purpose
from kmsframe.nonces import NoncePool
from kmsframe.secrets import KeyMaterial, Secret


def entry(cache: KeyCache, name: str) -> LoadedKey:
    key = Key(id="0" * 32, name=name, algorithm="aes-256-gcm", purpose=Purpose.ENCRYPT,
              created_at=0.0)
    return LoadedKey(key, cache.new_deadline(), None)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ttl_expires_entries() -> None:
    clock = Clock()
    cache = KeyCache(capacity=10, ttl_seconds=5, clock=clock)
    cache.put(entry(cache, "a"))
    assert cache.get("a") is not None
    clock.now += 6
    assert cache.get("a") is None and len(cache) == 0
    assert (cache.hits, cache.misses) == (1, 1)


def test_least_recently_used_is_evicted_first() -> None:
    cache = KeyCache(capacity=2, ttl_seconds=60)
    cache.put(entry(cache, "a"))
    cache.put(entry(cache, "b"))
    cache.get("a")  # a used since; b not
    cache.put(entry(cache, "c"))
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


def test_invalidate() -> None:
    cache = KeyCache()
    cache.put(entry(cache, "a"))
    cache.put(entry(cache, "b"))
    cache.invalidate("a")
    assert cache.get("a") is None and cache.get("b") is not None
    cache.invalidate()
    assert len(cache) == 0


@pytest.mark.parametrize("cls", [KeyMaterial, Secret])
def test_secrets_are_redacted_and_refuse_pickling(cls: type) -> None:
    value = cls(b"super secret bytes")
    for text in (repr(value), str(value), f"{value}", f"{value!r:>40}"):
        assert "super" not in text and "**********" in text
    with pytest.raises(TypeError):
        pickle.dumps(value)
    with pytest.raises(TypeError):
        hash(value)
    assert value == cls(b"super secret bytes") and value != cls(b"other")
    assert copy.deepcopy(value) is value
    assert value.reveal() == b"super secret bytes"


def test_nonce_pool_never_repeats_and_forgets_on_fork() -> None:
    import os

    pool = NoncePool(12, batch=64)
    seen = {pool.take() for _ in range(1000)}
    assert len(seen) == 1000 and all(len(n) == 12 for n in seen)
    pool.take()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the inherited nonces must be gone
        os.write(w, b"1" if not pool._nonces else b"0")  # noqa: SLF001
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    assert pool._nonces  # noqa: SLF001 - the parent keeps its own

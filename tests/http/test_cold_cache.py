"""``KeyService.is_warm``: what the crypto routes use to keep store reads off
the event loop (a cold key is served from the thread pool)."""

from __future__ import annotations

from pathlib import Path

from kmsframe.testing import embedded_deployment


def test_is_warm_follows_the_cache_and_the_change_signal(tmp_path: Path) -> None:
    with embedded_deployment(tmp_path) as d:
        s = d.service
        s.create_key("a")
        assert not s.is_warm("a") and not s.is_warm("missing")
        s.encrypt("a", b"x")
        assert s.is_warm("a")
        hits, misses = s.cache.hits, s.cache.misses
        assert s.is_warm("a")
        assert (s.cache.hits, s.cache.misses) == (hits, misses)  # no side effects
        s.rotate("a")  # any change, in any worker, makes every key cold
        assert not s.is_warm("a")
        s.encrypt("a", b"x")
        assert s.is_warm("a")

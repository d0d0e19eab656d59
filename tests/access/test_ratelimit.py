"""Rate-limit buckets shared by real worker processes (kmsframe.access.ratelimit)."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kmsframe.access import ratelimit
from kmsframe.access.ratelimit import LocalBuckets, SharedBuckets, refill
from kmsframe.errors import RateLimited
from kmsframe.testing import embedded_deployment

from .test_conditions import APP

RATE, BURST, SECONDS = 200.0, 50.0, 1.0
SLOT = "k\0app:billing"
spawn = mp.get_context("spawn")


def _hammer(path: str | None, ready: Any, go: Any, out: Any) -> None:
    """Take tokens as fast as possible for SECONDS; report (admitted, first, last)."""
    buckets = SharedBuckets(Path(path)) if path else LocalBuckets()
    buckets.take("warm-up", 1.0, 1.0)  # map the table before the clock starts
    ready.put(os.getpid())
    go.wait()
    admitted, first, last = 0, math.inf, -math.inf
    end = time.monotonic() + SECONDS
    while (before := time.monotonic()) < end:
        if buckets.take(SLOT, RATE, BURST):
            # The take read the clock between `before` and now: the window
            # measured from these can only be wider than the bucket's.
            admitted += 1
            first, last = min(first, before), time.monotonic()
        time.sleep(0.0005)  # three processes share two cores: let them interleave
    out.put((admitted, first, last))
    buckets.close()


def _combined(path: str | None, processes: int = 3) -> tuple[int, float]:
    ready, out, go = spawn.Queue(), spawn.Queue(), spawn.Event()
    procs = [spawn.Process(target=_hammer, args=(path, ready, go, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert all(n for n, _, _ in results), results  # every process got some tokens
    window = max(last for _, _, last in results) - min(first for _, first, _ in results)
    return sum(n for n, _, _ in results), window


def test_three_processes_share_one_bucket(tmp_path: Path) -> None:
    total, window = _combined(str(tmp_path / "ratelimit.buckets"))
    # Tokens taken over `window` can never exceed the burst plus the refill.
    assert total <= BURST + RATE * window, (total, window)
    assert total >= BURST + 0.8 * RATE * window, (total, window)  # and it does admit


def test_without_sharing_the_same_load_breaks_the_limit() -> None:
    """The check above can fail: per-process buckets admit about 3x."""
    total, window = _combined(None)
    assert total > 2 * (BURST + RATE * window), (total, window)


def _attach_and_wait(path: str, ready: Any, go: Any) -> None:
    SharedBuckets(Path(path), groups=1, ways=2)._open()
    ready.put(os.getpid())
    go.wait(60)


def test_a_full_group_falls_back_to_a_share_of_the_rate(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "tiny.buckets"
    buckets = SharedBuckets(path, groups=1, ways=2, monotonic=lambda: now[0])
    ready, go = spawn.Queue(), spawn.Event()
    other = spawn.Process(target=_attach_and_wait, args=(str(path), ready, go))
    other.start()
    try:
        ready.get(timeout=60)
        assert buckets.take("a", 1.0, 10.0) and buckets.take("b", 1.0, 10.0)  # group full
        # "c" has no slot: a per-process bucket at 1/2 of the rate (2 processes attached).
        assert sum(buckets.take("c", 1.0, 10.0) for _ in range(20)) == 5
        assert sum(buckets.take("a", 1.0, 10.0) for _ in range(20)) == 9  # still shared
        now[0] += 10.0  # "a" and "b" refill to their burst: their slots may be reused
        assert sum(buckets.take("c", 1.0, 10.0) for _ in range(20)) == 10
        assert sum(buckets.take("a", 1.0, 10.0) for _ in range(20)) == 10
    finally:
        go.set()
        other.join(timeout=30)
        buckets.close()


def test_a_full_bucket_is_not_taken_over(tmp_path: Path) -> None:
    now = [1000.0]
    buckets = SharedBuckets(tmp_path / "b", groups=1, ways=1, monotonic=lambda: now[0])
    assert buckets.take("a", 1.0, 2.0)
    now[0] += 0.5  # "a" has 1.5 of 2 tokens: not full, so "b" must fall back
    assert buckets.take("b", 1.0, 1.0) and not buckets.take("b", 1.0, 1.0)
    assert buckets.take("a", 1.0, 2.0) and not buckets.take("a", 1.0, 2.0)
    buckets.close()


def _hold_group_lock(path: str, ready: Any) -> None:
    import fcntl

    table = SharedBuckets(Path(path))._open()
    fcntl.lockf(table.fd, fcntl.LOCK_EX, table.groups * table.group_size, ratelimit.HEADER_SIZE)
    ready.put(os.getpid())
    time.sleep(120)


def test_a_lock_dies_with_its_process(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.buckets"
    ready = spawn.Queue()
    holder = spawn.Process(target=_hold_group_lock, args=(str(path), ready))
    holder.start()
    ready.get(timeout=60)
    buckets = SharedBuckets(path)
    done: list[bool] = []
    taker = threading.Thread(target=lambda: done.append(buckets.take(SLOT, 1.0, 1.0)))
    taker.start()
    taker.join(0.5)
    assert taker.is_alive() and not done  # the other process holds the group: we wait
    os.kill(holder.pid, signal.SIGKILL)  # crash while holding the lock
    taker.join(10)
    holder.join(10)
    assert done == [True]
    buckets.close()


def _take_in_child(buckets: SharedBuckets, out: Any) -> None:
    out.put((buckets.take(SLOT, 0.001, 3.0), buckets._open().processes()))


def test_fork_reopens_the_table(tmp_path: Path) -> None:
    """A child forked while a parent thread holds the table's thread lock
    neither deadlocks nor loses the shared count."""
    buckets = SharedBuckets(tmp_path / "ratelimit.buckets")
    assert buckets.take(SLOT, 0.001, 3.0)
    table = buckets._open()
    fork = mp.get_context("fork")
    out = fork.Queue()
    with table.lock:  # as if another thread were mid-take at fork time
        child = fork.Process(target=_take_in_child, args=(buckets, out))
        child.start()
        took, processes = out.get(timeout=30)
    child.join(10)
    assert took and processes == 2  # its own attachment, the parent's
    assert buckets.take(SLOT, 0.001, 3.0)
    assert not buckets.take(SLOT, 0.001, 3.0)  # 3 in all: parent 2, child 1
    buckets.close()


def test_a_foreign_file_is_reinitialised_and_torn_values_stay_bounded(tmp_path: Path) -> None:
    path = tmp_path / "ratelimit.buckets"
    path.write_bytes(b"not a table" * 100)
    buckets = SharedBuckets(path, groups=4, ways=2)
    assert buckets.take(SLOT, 1.0, 2.0)
    assert path.read_bytes()[:8] == ratelimit.MAGIC
    buckets.close()
    assert refill(math.nan, 0.0, 1.0, 5.0, 10.0) == 0.0
    assert refill(1.0, math.nan, 1.0, 5.0, 10.0) == 1.0
    assert refill(math.inf, 0.0, 1.0, 5.0, 10.0) == 5.0
    assert refill(1.0, 20.0, 1.0, 5.0, 10.0) == 1.0  # a clock from an earlier boot
    assert refill(1.0, 8.0, 1.0, 5.0, 10.0) == 3.0


def test_deployments_on_one_data_dir_share_the_limit(tmp_path: Path) -> None:
    """Two deployments (as two workers would) on one data dir: one bucket."""
    first = embedded_deployment(tmp_path / "kms")
    second = embedded_deployment(tmp_path / "kms")
    try:
        first.service.create_key("k")
        first.service.bind_app("k", "billing", ["encrypt"])
        first.service.set_conditions("k", {"rate_limit": {"per_second": 0.001, "burst": 4}})
        for d in (first, second, first, second):
            d.service.encrypt("k", b"x", principal=APP)
        for d in (first, second):
            with pytest.raises(RateLimited):
                d.service.encrypt("k", b"x", principal=APP)
        assert (tmp_path / "kms" / "ratelimit.buckets").exists()
    finally:
        first.close()
        second.close()

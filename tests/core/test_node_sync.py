"""Changes reach other hosts within a bounded delay: through the store's change
generation, polled by every serving worker (kmsframe.node_sync)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kmsframe.changes import LocalChangeSignal, SharedFileChangeSignal
from kmsframe.deployment import Deployment
from kmsframe.errors import KeyDisabled, PermissionDenied
from kmsframe.node_sync import StorePoller, StoreSyncedSignal
from kmsframe.testing import embedded_config, embedded_deployment


def test_one_host_change_bumps_each_other_host_once(deployment) -> None:
    storage = deployment.storage
    a = StoreSyncedSignal(LocalChangeSignal(), storage)
    b = StoreSyncedSignal(LocalChangeSignal(), storage)
    a.poll(), b.poll()
    before_a, before_b = a.current(), b.current()
    a.bump()
    assert a.current() == before_a + 1
    assert a.poll() is False and a.current() == before_a + 1  # its own change: no second bump
    assert b.current() == before_b  # not until it polls
    assert b.poll() is True and b.current() == before_b + 1
    assert b.poll() is False and b.current() == before_b + 1


def test_workers_of_one_host_take_a_remote_change_in_once(deployment, tmp_path: Path) -> None:
    path = tmp_path / "host" / "changes.counter"
    workers = [StoreSyncedSignal(SharedFileChangeSignal(path), deployment.storage)
               for _ in range(3)]
    remote = StoreSyncedSignal(LocalChangeSignal(), deployment.storage)
    for w in workers:
        w.poll()
    before = workers[0].current()
    remote.bump()
    assert [w.poll() for w in workers] == [True, False, False]
    assert {w.current() for w in workers} == {before + 1}


def test_a_change_made_between_two_of_ours_is_not_missed(deployment) -> None:
    storage = deployment.storage
    a = StoreSyncedSignal(LocalChangeSignal(), storage)
    b = StoreSyncedSignal(LocalChangeSignal(), storage)
    a.poll(), b.poll()
    b.bump()  # generation g+1, made on b
    seen = a.current()
    a.bump()  # generation g+2: a never polled g+1, so it must bump for it too
    assert a.current() == seen + 2
    assert a.poll() is False


def _two_hosts(tmp_path: Path, storage_url: str | None = None) -> tuple[Deployment, Deployment]:
    """Two deployments as two hosts: own data directories and change counters,
    one store and one master key (the soft HSM's sealed keystore)."""
    embedded_deployment(tmp_path / "a", storage_url=storage_url).close()
    a_config = embedded_config(tmp_path / "a", storage_url=storage_url)
    url = storage_url or f"sqlite:///{tmp_path / 'a' / 'kms.db'}"
    b_config = embedded_config(tmp_path / "b", storage_url=url,
                               extra={"hsm": dict(a_config.hsm)})
    return Deployment.open(a_config), Deployment.open(b_config)


def _seen_within(check, seconds: float) -> float | None:
    """How long until ``check()`` raised PermissionDenied/KeyDisabled (None: never)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            check()
        except (KeyDisabled, PermissionDenied):
            return time.monotonic() - start
        time.sleep(0.02)
    return None


@pytest.mark.parametrize("poll", [True, False])
def test_a_disable_on_one_host_is_seen_on_another_within_the_poll_interval(
        tmp_path: Path, poll: bool) -> None:
    a, b = _two_hosts(tmp_path)
    poller = StorePoller(b.service.signal, 0.1) if poll else None
    try:
        a.service.create_key("k")
        b.service.encrypt("k", b"warm")  # b caches the key
        if poller is not None:
            poller.start()
        a.service.disable("k")
        delay = _seen_within(lambda: b.service.encrypt("k", b"x"), 3.0)
        if poll:
            # Bound: one poll interval plus one store read (generous margin here).
            assert delay is not None and delay < 1.0, delay
        else:
            # Without the poller the cached key serves on: the test above can fail.
            assert delay is None
    finally:
        if poller is not None:
            poller.stop()
        a.close()
        b.close()


@pytest.mark.postgres
def test_bindings_revoked_on_one_postgres_node_reach_the_other(tmp_path: Path,
                                                               postgres_url: str) -> None:
    a, b = _two_hosts(tmp_path, postgres_url)
    poller = StorePoller(b.service.signal, 0.1)
    try:
        a.service.create_key("k")
        a.service.bind_app("k", "app-1", ("encrypt",))
        from kmsframe.authorization import Principal

        app = Principal(id="app-1", kind="app")
        b.service.encrypt("k", b"warm", principal=app)
        poller.start()
        a.service.unbind_app("k", "app-1")
        delay = _seen_within(lambda: b.service.encrypt("k", b"x", principal=app), 3.0)
        assert delay is not None and delay < 1.0, delay
    finally:
        poller.stop()
        a.close()
        b.close()


def test_an_unreadable_store_skips_the_poll(deployment, caplog) -> None:
    signal = StoreSyncedSignal(LocalChangeSignal(), deployment.storage)
    poller = StorePoller(signal, 10)
    deployment.storage.close()
    assert poller.poll_once() is False
    assert "cannot read the store's change generation" in caplog.text

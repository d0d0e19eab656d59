"""Lifecycle events reach plugins; the scheduler rotates, announces and destroys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import kmsframe
from kmsframe.authorization import AuthorizationRequest, Denial
from kmsframe.errors import KeyNotFound, PermissionDenied, RateLimited
from kmsframe.model import KeyStatus, RotationPolicy
from kmsframe.scheduler import Scheduler
from kmsframe.service import KeyService


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @kmsframe.hookimpl
    def kms_key_created(self, key):
        self.events.append(("created", key.name))

    @kmsframe.hookimpl
    def kms_rotation_due(self, key, due_at, next_version):
        self.events.append(("due", next_version))

    @kmsframe.hookimpl
    def kms_version_rotated(self, key, previous_version, new_version):
        self.events.append(("rotated", (previous_version, new_version)))

    @kmsframe.hookimpl
    def kms_version_state_changed(self, key, version, old_state, new_state, reason):
        self.events.append(("state", (version, old_state.value, new_state.value)))

    @kmsframe.hookimpl
    def kms_key_status_changed(self, key, old_status, new_status):
        self.events.append(("status", new_status.value))

    @kmsframe.hookimpl
    def kms_key_destroyed(self, key):
        self.events.append(("destroyed", key.name))


@pytest.fixture
def recorder(service: KeyService) -> Recorder:
    rec = Recorder()
    service.plugins.register(rec, "recorder")
    return rec


def test_events_fire_after_changes(service: KeyService, recorder: Recorder) -> None:
    service.create_key("k")
    service.rotate("k")
    service.set_version_state("k", 10001, "retired")
    service.disable("k")
    assert recorder.events == [
        ("created", "k"),
        ("state", (10001, "active", "expired")),
        ("state", (10002, "pre_active", "active")),
        ("rotated", (10001, 10002)),
        ("state", (10001, "expired", "retired")),
        ("status", "disabled"),
    ]


def test_a_failing_listener_does_not_undo_the_change(service: KeyService) -> None:
    class Broken:
        @kmsframe.hookimpl
        def kms_key_created(self, key):
            raise RuntimeError("listener bug")

    service.plugins.register(Broken(), "broken")
    service.create_key("k")
    assert service.get_key("k").name == "k"


def test_scheduler_announces_then_rotates_on_policy(service: KeyService, clock,
                                                    recorder: Recorder) -> None:
    day = 86400
    service.create_key("k", rotation_policy=RotationPolicy(period_seconds=90 * day,
                                                           notice_seconds=7 * day))
    scheduler = Scheduler(service)
    assert scheduler.run_once().announced == ()
    clock.advance(83 * day + 1)
    report = scheduler.run_once()
    assert report.announced == ("k",)
    key = service.get_key("k")
    assert key.version(10002).state.value == "pre_active"
    assert service.encrypt("k", b"x").version == 10001  # announced, not yet in use
    assert scheduler.run_once().announced == ()  # announced once only
    clock.advance(7 * day)
    assert scheduler.run_once().rotated == ("k",)
    key = service.get_key("k")
    assert key.primary_version == 10002
    assert key.next_rotation_at == pytest.approx(clock.now + 90 * day)
    assert service.encrypt("k", b"x").version == 10002
    assert ("due", 10002) in recorder.events and ("rotated", (10001, 10002)) in recorder.events


def test_scheduler_destroys_after_the_waiting_period(service: KeyService, clock,
                                                     recorder: Recorder) -> None:
    service.create_key("k")
    service.schedule_deletion("k", waiting_days=30)
    scheduler = Scheduler(service)
    clock.advance(29 * 86400)
    assert scheduler.run_once().destroyed == ()
    clock.advance(2 * 86400)
    assert scheduler.run_once().destroyed == ("k",)
    key = service.get_key("k")
    assert key.status is KeyStatus.DESTROYED
    assert all(v.wrapped is None and v.state.value == "destroyed" for v in key.versions)
    assert ("destroyed", "k") in recorder.events
    with pytest.raises(KeyNotFound):
        service.encrypt("k", b"x")


def test_rotation_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        RotationPolicy(period_seconds=10)
    with pytest.raises(ValueError):
        RotationPolicy(period_seconds=3600, notice_seconds=3600)


def test_authorization_plugin_can_veto(deployment) -> None:
    class OnlyDecrypt:
        @kmsframe.hookimpl
        def kms_authorize(self, request: AuthorizationRequest):
            if request.operation == "encrypt":
                return Denial(reason="encrypt is not allowed in this test")
            if request.operation == "keys.rotate":
                return Denial(reason="slow down", code="rate_limited")
            return None

    deployment.service.create_key("k")
    text = deployment.service.encrypt("k", b"x").ciphertext
    deployment.plugins.register(OnlyDecrypt(), "veto")
    from kmsframe.keystore import KeyRepository
    from kmsframe.service import KeyService as Service

    service = Service(plugins=deployment.plugins, hsm=deployment.hsm,
                      repository=KeyRepository(deployment.storage),
                      signal=deployment.service.signal)
    with pytest.raises(PermissionDenied) as info:
        service.encrypt("k", b"x")
    assert "slow" not in info.value.message and "test" not in info.value.message
    with pytest.raises(RateLimited):
        service.rotate("k")
    assert service.decrypt("k", text) == b"x"


def test_racing_schedulers_rotate_a_due_key_once(service: KeyService, clock) -> None:
    service.create_key("k", rotation_policy=RotationPolicy(period_seconds=3600))
    clock.advance(3601)
    stale = Scheduler(service)
    assert Scheduler(service).run_once().rotated == ("k",)
    # A second scheduler that saw the key as due before the first stored its
    # rotation must not rotate it again.
    assert service.rotate("k", if_due=True) is None
    assert stale.run_once().rotated == ()
    assert service.get_key("k").primary_version == 10002


def test_scheduler_thread_runs_passes(service: KeyService, clock) -> None:
    import time as _time

    service.create_key("k", rotation_policy=RotationPolicy(period_seconds=3600))
    clock.advance(3601)
    scheduler = Scheduler(service, interval_seconds=0.05)
    scheduler.start()
    try:
        deadline = _time.monotonic() + 10
        while service.get_key("k").primary_version != 10002 and _time.monotonic() < deadline:
            _time.sleep(0.05)
    finally:
        scheduler.stop()
    assert service.get_key("k").primary_version == 10002


def test_scheduler_steps_are_bracketed_by_audit_records(tmp_path) -> None:
    from kmsframe.audit.records import STARTED
    from kmsframe.audit.search import AuditQuery, search
    from kmsframe.audit.sinks import ReadableSink
    from kmsframe.model import RotationPolicy
    from kmsframe.scheduler import Scheduler
    from kmsframe.testing import embedded_deployment

    with embedded_deployment(tmp_path) as d:
        d.service.create_key("due", rotation_policy=RotationPolicy(3600, 0))
        clock = d.service.clock
        d.service.clock = lambda: clock() + 7200  # the rotation is due
        scheduler = Scheduler(d.service, write_ahead=d.access.write_ahead)
        assert scheduler.run_once().rotated == ("due",)
        # Another scheduler won the step: recorded as nothing_due, not as a rotation.
        assert scheduler._step("keys.rotate", "due", lambda name: None) is False
        d.access.audit.flush()
        sink = next(s for s in d.access.audit.sinks if isinstance(s, ReadableSink))
        found = search(sink.read(), AuditQuery(key="due", action="keys.rotate"))
        assert [r["outcome"] for r in reversed(found)] == [STARTED, "ok", STARTED,
                                                           "nothing_due"]
        assert {r["actor"] for r in found} == {"system:scheduler"}
        rotated = search(sink.read(), AuditQuery(request_id=found[-1]["request_id"]))
        assert {r["action"] for r in rotated} >= {"keys.rotate", "version.rotated"}, rotated


def _lead_and_wait(lock: str, ready) -> None:  # type: ignore[no-untyped-def]
    import time

    from kmsframe.scheduler import Scheduler

    scheduler = Scheduler(None, lock_path=Path(lock))  # type: ignore[arg-type]
    ready.put(scheduler.leads())
    time.sleep(60)  # until killed (a process killed inside Event.wait can wedge the Event)


def test_one_scheduler_per_host_leads_and_another_takes_over(tmp_path) -> None:
    import multiprocessing
    import os
    import signal

    from kmsframe.scheduler import Scheduler

    lock = tmp_path / "scheduler.lock"
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Queue()
    other = spawn.Process(target=_lead_and_wait, args=(str(lock), ready))
    other.start()
    try:
        assert ready.get(timeout=60) is True  # the other worker leads
        here = Scheduler(None, lock_path=lock)  # type: ignore[arg-type]
        assert here.leads() is False
        os.kill(other.pid, signal.SIGKILL)  # the leader dies: its lock dies with it
        other.join(timeout=30)
        assert here.leads() is True and here.leads() is True
        second = Scheduler(None, lock_path=lock)  # type: ignore[arg-type]
        assert second.leads() is False
        here.stop()  # a clean stop hands it on too
        assert second.leads() is True
        second.stop()
    finally:
        if other.is_alive():
            other.kill()
        other.join(timeout=30)

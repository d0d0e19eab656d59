"""Runs what is due: announced and automatic rotations, and key destruction.

One pass (``run_once``) looks at every key:

* a rotation policy's notice period has begun → the next version is created
  pre-active and ``kms_rotation_due`` fires;
* its rotation is due → that version becomes primary and
  ``kms_version_rotated`` fires;
* a scheduled deletion's waiting period has ended → the key is destroyed and
  ``kms_key_destroyed`` fires.

Every step is an optimistic update of the key, so several schedulers (one per
node) may run at once: one wins each step and the others see nothing to do.

With ``lock_path`` (the serving workers pass one in the data directory),
only the worker holding an exclusive ``flock`` on it runs passes: one
scheduler per host instead of one per worker, so a due rotation is
attempted (and audited) once per host. The others try to take the lock
every interval, so when the holder dies its lock dies with it and another
worker carries on.

Given ``write_ahead`` (:meth:`kmsframe.access.control.AccessControl.write_ahead`),
each step it takes is bracketed like a management call: a durable ``started``
record before it runs, then the outcome — ``ok``, ``nothing_due`` when another
scheduler won the step, or the error's code.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

import attrs

from .authorization import Principal
from .errors import KmsError
from .model import KeyStatus
from .service import KeyService

log = logging.getLogger(__name__)
SCHEDULER = Principal(id="scheduler", kind="system", roles=frozenset({"system"}))


@attrs.frozen(slots=True)
class PassReport:
    announced: tuple[str, ...] = ()
    rotated: tuple[str, ...] = ()
    destroyed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class Scheduler:
    def __init__(self, service: KeyService, interval_seconds: float = 60.0, *,
                 write_ahead: Callable[..., AbstractContextManager[Any]] | None = None,
                 lock_path: Path | None = None) -> None:
        self.service = service
        self.interval = interval_seconds
        self.write_ahead = write_ahead
        self.lock_path = lock_path
        self._lock_file: IO[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> PassReport:
        announced, rotated, destroyed, failed = [], [], [], []
        now = self.service.clock()
        for key in self.service.list_keys():
            try:
                if key.status is KeyStatus.PENDING_DELETION and key.deletion_at is not None \
                        and key.deletion_at <= now:
                    if self._step("keys.destroy", key.name, lambda name: self.service.
                                  destroy_if_due(name, actor=SCHEDULER)):
                        destroyed.append(key.name)
                    continue
                policy, due = key.rotation_policy, key.next_rotation_at
                if key.status is not KeyStatus.ENABLED or policy is None or due is None:
                    continue
                if now >= due:
                    if self._step("keys.rotate", key.name, lambda name: self.service.rotate(
                            name, actor=SCHEDULER, reason="scheduled rotation", if_due=True)):
                        rotated.append(key.name)
                elif now >= due - policy.notice_seconds:
                    if self._step("keys.announce_rotation", key.name, lambda name: self.service.
                                  announce_rotation(name, actor=SCHEDULER)):
                        announced.append(key.name)
            except KmsError as exc:
                log.error("scheduler: %s failed: %s", key.name, exc.code)
                failed.append(key.name)
        return PassReport(tuple(announced), tuple(rotated), tuple(destroyed), tuple(failed))

    def _step(self, action: str, name: str, call: Callable[[str], Any]) -> bool:
        """Run one due step (audited write-ahead if configured); did it act?"""
        bracket = self.write_ahead(SCHEDULER, action, key=name) if self.write_ahead \
            else nullcontext()
        with bracket as note:
            acted = call(name) is not None
            if note is not None and not acted:
                note.outcome = "nothing_due"
        return acted

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="kmsframe-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def leads(self) -> bool:
        """Is this the host's scheduler (holding the lock), or is there no lock?"""
        if self.lock_path is None or self._lock_file is not None:
            return True
        handle = open(self.lock_path, "ab")  # noqa: SIM115 - held while leading
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.leads():
                    self.run_once()
            except Exception:  # keep the scheduler alive; the next pass retries
                log.exception("scheduler pass failed")

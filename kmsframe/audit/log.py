"""The audit log of one worker process: chains, seals, writes, fails closed.

* :meth:`AuditLog.record` — management records: written to every sink (with
  a seal, anchored) before it returns, so the response that follows is only
  sent once the record is durable.
* :meth:`AuditLog.record_batched` — crypto records: queued and written by a
  background flusher every ``flush_interval`` seconds, one sink write per
  batch.
* :meth:`AuditLog.check_writable` — called before each crypto operation: if
  a write failed (records are kept and retried) or the queue is full, it
  raises :class:`~kmsframe.errors.Unavailable` — the service refuses crypto
  rather than drop records. ``fail_open = true`` logs instead (not default).

A stream is sealed at least every ``seal_interval`` seconds while records
come in, after every management record, and at close; each seal is also
anchored outside the log (see :mod:`kmsframe.audit.chain`).
"""

from __future__ import annotations

import collections
import json
import logging
import secrets as _random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ..errors import ConfigurationError, KmsError, Unavailable
from ..providers import AuditSink, Storage
from .chain import Chain
from .records import AuditEvent
from .sealing import SealingKeys

log = logging.getLogger(__name__)
ANCHOR_KIND = "audit_anchor"
ANCHOR_FORMAT = 1


@attrs.frozen(slots=True)
class AuditSettings:
    flush_interval: float = 0.05
    max_pending: int = 200_000
    seal_interval: float = 60.0
    fail_closed: bool = True

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "AuditSettings":
        known = {f.name for f in attrs.fields(cls)}
        values = {k: v for k, v in raw.items() if k != "sinks"}
        if "fail_open" in values:
            values["fail_closed"] = not values.pop("fail_open")
        unknown = set(values) - known
        if unknown:
            raise ConfigurationError(f"[audit] has unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)


class AuditLog:
    def __init__(self, sinks: Sequence[AuditSink], storage: Storage, sealing: SealingKeys, *,
                 settings: AuditSettings = AuditSettings(),
                 clock: Callable[[], float] = time.time) -> None:
        if not sinks:
            raise ConfigurationError("the audit log needs at least one sink")
        self.sinks = list(sinks)
        self.storage = storage
        self.sealing = sealing
        self.settings = settings
        self.clock = clock
        self.chain = Chain(_random.token_hex(8))
        self._queue: collections.deque[Any] = collections.deque()
        # Chained but not yet in every sink, as JSON lines; and the last seal
        # among them, to anchor once they are written.
        self._lines: list[str] = []
        self._seal_to_anchor: dict[str, Any] | None = None
        self._written_to: dict[int, int] = {}  # sink index -> lines of _lines it has
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._last_seal = self.clock()
        self._sealed_n = 0  # the chain position the last seal covered
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seal_key: tuple[str, Any] | None = None  # fetched at the first seal

    # -- writing -------------------------------------------------------------------

    def start(self) -> None:
        """Start the background flusher for batched (crypto) records."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kmsframe-audit",
                                            daemon=True)
            self._thread.start()

    def record(self, event: AuditEvent, *, seal: bool = True) -> None:
        """Write ``event`` (and everything queued before it) durably, sealed
        unless ``seal`` is false (a write-ahead record: the outcome record
        that follows it seals both)."""
        self.record_all((event,), seal=seal)

    def record_all(self, events: Sequence[AuditEvent], *, seal: bool = True) -> None:
        """Write ``events`` (and everything queued before) durably, sealed;
        raises :class:`~kmsframe.errors.Unavailable` if they were not kept."""
        with self._lock:
            self._drain()
            for event in events:
                self._lines.append(self.chain.link_line(event.to_dict())[1])
            if seal:
                self._seal()
            self._write()

    def record_batched(self, event: AuditEvent) -> None:
        """Queue ``event``; the flusher writes it within ``flush_interval``."""
        self._queue.append(event)

    def record_crypto(self, at: float, actor: str, action: str, outcome: str, key: str | None,
                      version: int | None, source: str | None, detail: str | None) -> None:
        """:meth:`record_batched` for the crypto hot path: a tuple, no object."""
        self._queue.append((at, actor, action, outcome, key, version, source, detail))

    def check_writable(self) -> None:
        """Refuse (fail closed) while records cannot be written."""
        if (self._failure is not None or len(self._queue) > self.settings.max_pending) \
                and self.settings.fail_closed:
            raise Unavailable("the audit log cannot be written; crypto is refused",
                              log_detail=self._failure or "audit queue is full")

    @property
    def healthy(self) -> bool:
        return self._failure is None

    def flush(self) -> None:
        """Write everything queued now (sealing if the interval has passed)."""
        with self._lock:
            self._drain()
            if self.clock() - self._last_seal >= self.settings.seal_interval:
                self._seal()
            try:
                self._write()
            except KmsError:
                pass  # kept in _lines, reported by check_writable, retried next time

    def close(self) -> None:
        """Stop the flusher, seal the stream a last time and write it out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._drain()
            self._seal(closed=True)
            try:
                self._write()
            except KmsError:
                log.error("audit records could not be written at close: %s", self._failure)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing audit sink %s failed", sink.id)

    # -- internals (under self._lock) --------------------------------------------------

    def _drain(self) -> None:
        queue, chain, lines = self._queue, self.chain, self._lines
        for _ in range(len(queue)):
            item = queue.popleft()
            if type(item) is tuple:
                lines.append(chain.link_crypto(*item))
            else:
                lines.append(chain.link_line(item.to_dict())[1])

    def _seal(self, closed: bool = False) -> None:
        if self.chain.n == self._sealed_n and not closed:
            return  # nothing new since the last seal
        if self._seal_key is None:
            try:
                self._seal_key = self.sealing.current()
            except KmsError as exc:  # a sealed HSM: chain on, seal once it is open
                log.warning("audit stream cannot be sealed yet: %s", exc.code)
                return
        key_id, key = self._seal_key
        seal, line = self.chain.seal_line(key.reveal(), key_id, self.clock(), closed)
        self._lines.append(line)
        self._seal_to_anchor = seal
        self._sealed_n = self.chain.n
        self._last_seal = self.clock()

    def _write(self) -> None:
        """Write the unwritten records to every sink, then anchor the last seal."""
        if not self._lines:
            return
        batch = self._lines
        failure = None
        for index, sink in enumerate(self.sinks):
            done = self._written_to.get(index, 0)
            if done >= len(batch):
                continue
            try:
                write_lines = getattr(sink, "write_lines", None)
                if write_lines is not None:  # built-in sinks: reuse the encoded lines
                    write_lines(batch[done:])
                else:
                    sink.write([json.loads(line) for line in batch[done:]])
            except Exception as exc:
                failure = self._failure = f"audit sink {sink.id} failed: {exc!r}"
                log.error("%s", failure)
                if not self.settings.fail_closed:
                    continue  # fail open: this sink loses the batch
                raise Unavailable("the audit log cannot be written", log_detail=failure) from None
            self._written_to[index] = len(batch)
        if self._seal_to_anchor is not None:
            self._anchor(self._seal_to_anchor)
            self._seal_to_anchor = None
        self._lines = []
        self._written_to = {}
        self._failure = failure

    def _anchor(self, seal: Mapping[str, Any]) -> None:
        """Record the latest seal outside the log, so truncation is visible."""
        stream = self.chain.stream
        doc = {"format": ANCHOR_FORMAT, "stream": stream, "n": seal["n"], "hash": seal["hash"],
               "sealed_n": seal["sealed_n"], "sealed_head": seal["sealed_head"],
               "mac": seal["mac"], "seal_key": seal["seal_key"], "at": seal["at"],
               "closed": bool(seal.get("closed"))}
        try:
            current = self.storage.get(ANCHOR_KIND, stream)
            self.storage.put(ANCHOR_KIND, stream, doc,
                             expected_revision=0 if current is None else current.revision)
        except KmsError as exc:
            self._failure = f"audit anchor could not be stored: {exc.code}"
            raise Unavailable("the audit log cannot be written", log_detail=self._failure) from None

    def _run(self) -> None:
        interval = self.settings.flush_interval
        while not self._stop.wait(interval):
            due = self.clock() - self._last_seal >= self.settings.seal_interval
            if self._queue or self._lines or (due and self.chain.n != self._sealed_n):
                try:
                    self.flush()
                except Exception:  # never let the flusher die
                    log.exception("audit flush failed")

"""A change made on one host reaches every other host within a bounded delay.

Workers on one host share the data directory's change counter
(:mod:`kmsframe.changes`), so they see a change as soon as it returns. Hosts
share only the store. So the signal also counts changes *in the store*:
:meth:`StoreSyncedSignal.bump` increments the document ``signal/changes``
(compare-and-swap), and every serving worker polls it every
``store_poll_seconds`` (``[keys]``, default 1 s) with :class:`StorePoller`;
when it moved, the host's own counter is bumped once and every worker there
drops its key cache before its next request.

The bound: a management call (rotate, rollback, disable, bind, revoke…) that
returned on host A is seen by every request on host B that starts more than
``store_poll_seconds`` plus one store read later. If the store cannot be
read, that poll is skipped and logged; cached keys go on serving until their
``cache_ttl_seconds`` (300 s by default), which is then the bound — a node
cut off from the store cannot load anything new either. If the store
increment itself fails after a change was stored, that is logged as not
propagated, and the cache TTL is again the bound.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from .errors import ConcurrentModification, Conflict, KmsError
from .providers import Storage

log = logging.getLogger(__name__)

KIND_SIGNAL = "signal"
SIGNAL_ID = "changes"
MAX_INCREMENT_ATTEMPTS = 20


class HostSignal(Protocol):
    """What :mod:`kmsframe.changes` offers: a host-wide counter that knows the
    last store generation it took in."""

    view: Any

    def current(self) -> int: ...

    def bump(self) -> None: ...

    def observe_remote(self, generation: int) -> bool: ...

    def note_own(self, generation: int) -> None: ...

    def close(self) -> None: ...


class StoreSyncedSignal:
    """The host's change signal, also told to (and by) the other hosts."""

    def __init__(self, local: HostSignal, storage: Storage) -> None:
        self.local = local
        self.storage = storage
        self.view = local.view  # the hot path compares this buffer's first 8 bytes

    def current(self) -> int:
        return self.local.current()

    def bump(self) -> None:
        """This host's workers at once; other hosts at their next poll."""
        self.local.bump()
        try:
            self.local.note_own(self._increment())
        except KmsError as exc:
            log.error("a change was stored but could not be announced to other hosts "
                      "(%s); they see it within their key-cache TTL", exc.code)

    def poll(self) -> bool:
        """Take in the other hosts' changes; True if there were any."""
        return self.local.observe_remote(_generation(self.storage.get(KIND_SIGNAL, SIGNAL_ID)))

    def close(self) -> None:
        self.local.close()

    def _increment(self) -> int:
        for _ in range(MAX_INCREMENT_ATTEMPTS):
            doc = self.storage.get(KIND_SIGNAL, SIGNAL_ID)
            n = _generation(doc) + 1
            try:
                self.storage.put(KIND_SIGNAL, SIGNAL_ID, {"n": n},
                                 expected_revision=0 if doc is None else doc.revision)
            except Conflict:  # another host announced a change at the same time
                continue
            return n
        raise ConcurrentModification("the change signal is busy")


def _generation(doc: Any) -> int:
    """The store's change generation in the signal document (0 before the first)."""
    return int(doc.data["n"]) if doc is not None else 0


class StorePoller:
    """A worker's background thread that polls the store's change generation."""

    def __init__(self, signal: StoreSyncedSignal, interval: float) -> None:
        self.signal = signal
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self.poll_once()  # nothing cached yet, but records the generation we start at
        self._thread = threading.Thread(target=self._run, name="kms-store-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def poll_once(self) -> bool:
        try:
            changed = self.signal.poll()
        except KmsError as exc:
            if not self._failing:
                log.warning("cannot read the store's change generation (%s); cached keys "
                            "serve until their TTL", exc.code)
            self._failing = True
            return False
        if self._failing:
            log.info("the store's change generation is readable again")
            self._failing = False
        return changed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll_once()

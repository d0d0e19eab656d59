"""The built-in audit sinks, registered through ``kms_register_audit_sinks``
like any plugin's: ``jsonl`` (a JSON-lines file) and ``store`` (the
deployment's key store's append-only ``audit`` log, e.g. the SQL store).

Configure them as ``[[audit.sinks]]`` tables::

    [[audit.sinks]]
    type = "jsonl"
    path = "/var/log/kmsframe/audit.jsonl"   # default: <data_dir>/audit.jsonl

    [[audit.sinks]]
    type = "store"

With no ``[[audit.sinks]]`` the deployment uses ``jsonl`` (anchored in the
key store, so the log and its truncation evidence are kept apart). The core passes
every sink factory its settings plus ``deployment_storage``, the deployment's
:class:`~kmsframe.providers.Storage`, for sinks that write to the key store.

A sink that can be read back for ``audit verify`` and ``audit search`` also
offers ``read()``, yielding records in the order written.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigurationError, Unavailable
from ..hookspecs import hookimpl
from ..providers import AuditSink, Storage
from .chain import canonical_text

PLUGIN_NAME = "kmsframe.audit_sinks"
AUDIT_LOG = "audit"
BATCH_FORMAT = 1


@runtime_checkable
class ReadableSink(Protocol):
    id: str

    def read(self) -> Iterator[Mapping[str, Any]]: ...


def _line(record: Mapping[str, Any]) -> str:
    return canonical_text(record)


class JsonLinesSink:
    """Appends one JSON object per line; each batch is one locked, fsynced write."""

    id = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"JsonLinesSink({str(self.path)!r})"

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.write_lines([_line(r) for r in records])

    def write_lines(self, lines: list[str]) -> None:
        """Append already-encoded records (one JSON object per string)."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if not data:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                # Several worker processes append to one file: the lock keeps
                # each batch's lines together.
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise Unavailable("the audit log cannot be written",
                              log_detail=f"audit file {self.path}: {exc.strerror}") from None

    def read(self) -> Iterator[Mapping[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError:
                    yield {"_corrupt": f"line {number} is not JSON"}

    def close(self) -> None:
        pass


class StoreSink:
    """Writes each batch as one entry of the key store's ``audit`` log."""

    id = "store"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        # One entry per batch — one transaction however many records — with
        # the records as JSON lines in one string, which the store encodes
        # far faster than a list of objects.
        self.write_lines([_line(r) for r in records])

    def write_lines(self, lines: list[str]) -> None:
        """Append already-encoded records (one JSON object per string)."""
        text = "\n".join(lines) + "\n" if lines else ""
        if text:
            self.storage.append(AUDIT_LOG, {"format": BATCH_FORMAT, "lines": text})

    def read(self) -> Iterator[Mapping[str, Any]]:
        after = 0
        while True:
            page = self.storage.read_log(AUDIT_LOG, after=after, limit=500)
            if not page:
                return
            for seq, entry in page:
                if entry.get("format") != BATCH_FORMAT:
                    yield {"_corrupt": f"audit log entry {seq} has an unknown format"}
                    continue
                for number, line in enumerate(entry.get("lines", "").splitlines(), 1):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        yield {"_corrupt": f"audit log entry {seq} line {number} is not JSON"}
                after = seq
            after = page[-1][0]

    def close(self) -> None:
        pass


def build_jsonl(settings: Mapping[str, Any]) -> JsonLinesSink:
    path = settings.get("path") or Path(settings.get("data_dir", ".")) / "audit.jsonl"
    path = Path(path)
    if not path.is_absolute() and settings.get("data_dir"):
        path = Path(settings["data_dir"]) / path
    return JsonLinesSink(path)


def build_store(settings: Mapping[str, Any]) -> StoreSink:
    storage = settings.get("deployment_storage")
    if storage is None:
        raise ConfigurationError("audit sink 'store' needs the deployment's key store")
    return StoreSink(storage)


@hookimpl
def kms_register_audit_sinks(register: Callable[[str, Callable[..., AuditSink]], None]) -> None:
    """The built-in sinks: ``jsonl`` and ``store``."""
    register("jsonl", build_jsonl)
    register("store", build_store)

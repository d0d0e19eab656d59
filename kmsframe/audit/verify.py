"""Check an audit log: every edit, deletion, reordering or truncation shows.

For each sink that can be read back, and each stream in it:

* records appear in order ``n`` = 1, 2, 3 ... (a gap is a deletion, a step
  back a reordering or duplicate; a stream not starting at 1 lost its head);
* each record's ``prev`` is the hash of the one before and its ``hash`` is
  right (an edit breaks one of these);
* each seal's MAC is right under the sealing key (unwrapped by the HSM) and
  covers the record just before it;
* every anchor kept in the key store (the latest seal of each stream) is in
  the log with the same hash — a log cut after its last seal, or a stream
  removed entirely, fails here;
* every sink holds the same head for each stream as the others.

Records after a stream's last seal are reported as *unsealed* (normal for a
running worker; a stream that was closed ends with a closing seal).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..errors import KmsError
from ..providers import Storage
from .chain import GENESIS, RECORD_FORMAT, record_hash, seal_mac
from .log import ANCHOR_KIND
from .sealing import SealingKeys


@attrs.define
class StreamState:
    n: int = 0
    head: str = GENESIS
    last_sealed_n: int = 0
    closed: bool = False
    records: int = 0
    hashes: dict[int, str] = attrs.field(factory=dict)


@attrs.define
class VerifyReport:
    problems: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    records: int = 0
    streams: dict[str, StreamState] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "streams": len(self.streams),
                "problems": list(self.problems), "warnings": list(self.warnings)}


def verify_records(records: Iterable[Mapping[str, Any]], sealing: SealingKeys,
                   *, where: str = "log") -> VerifyReport:
    """Check the chain and seals of one sink's records, in the order written."""
    report = VerifyReport()
    keys: dict[str, bytes | None] = {}
    for position, record in enumerate(records, 1):
        report.records += 1
        if "_corrupt" in record:
            report.problems.append(f"{where}: {record['_corrupt']}")
            continue
        stream = record.get("stream")
        n = record.get("n")
        if record.get("format") != RECORD_FORMAT or not isinstance(stream, str) \
                or not isinstance(n, int):
            report.problems.append(f"{where}: record {position} is not an audit record")
            continue
        state = report.streams.setdefault(stream, StreamState())
        state.records += 1
        label = f"{where}: stream {stream} record {n}"
        if n != state.n + 1:
            if n <= state.n:
                report.problems.append(f"{label}: out of order or repeated (after {state.n})")
            else:
                report.problems.append(
                    f"{label}: records {state.n + 1}..{n - 1} are missing (deleted)")
        if record.get("prev") != state.head and n == state.n + 1:
            report.problems.append(f"{label}: does not link to the record before it")
        actual = record_hash(record)
        if not hmac.compare_digest(actual, str(record.get("hash", ""))):
            report.problems.append(f"{label}: content does not match its hash (edited)")
        if state.closed:
            report.problems.append(f"{label}: written after the stream was closed")
        if record.get("type") == "seal":
            _check_seal(record, stream, state, sealing, keys, label, report)
        if n > state.n:
            state.n, state.head = n, str(record.get("hash", ""))
            state.hashes[n] = state.head
    for stream, state in report.streams.items():
        if state.n > state.last_sealed_n:
            report.warnings.append(
                f"{where}: stream {stream}: {state.n - state.last_sealed_n} records after its "
                f"last seal are not sealed yet")
    return report


def _check_seal(record: Mapping[str, Any], stream: str, state: StreamState,
                sealing: SealingKeys, keys: dict[str, bytes | None], label: str,
                report: VerifyReport) -> None:
    key_id = str(record.get("seal_key"))
    if key_id not in keys:
        try:
            keys[key_id] = sealing.get(key_id).reveal()
        except KmsError:
            keys[key_id] = None
    key = keys[key_id]
    if key is None:
        report.problems.append(f"{label}: seal names an unknown sealing key {key_id!r}")
        return
    expected = seal_mac(key, stream, record.get("sealed_n"), record.get("sealed_head"))
    if not hmac.compare_digest(expected, str(record.get("mac", ""))):
        report.problems.append(f"{label}: seal MAC is wrong (forged seal)")
        return
    if record.get("sealed_n") != record["n"] - 1 or record.get("sealed_head") != record.get("prev"):
        report.problems.append(f"{label}: seal does not cover the record before it")
        return
    state.last_sealed_n = record["n"]
    state.closed = bool(record.get("closed"))


def check_anchors(report: VerifyReport, storage: Storage, sealing: SealingKeys,
                  *, where: str = "log") -> None:
    """Every stream's anchored latest seal must be in the log, unaltered."""
    for doc in storage.list(ANCHOR_KIND):
        anchor = doc.data
        stream = anchor.get("stream", doc.id)
        try:
            key = sealing.get(str(anchor.get("seal_key"))).reveal()
        except KmsError:
            report.problems.append(f"anchor of stream {stream}: unknown sealing key")
            continue
        expected = seal_mac(key, stream, anchor.get("sealed_n"), anchor.get("sealed_head"))
        if not hmac.compare_digest(expected, str(anchor.get("mac", ""))):
            report.problems.append(f"anchor of stream {stream}: MAC is wrong (forged anchor)")
            continue
        # The MAC covers (sealed_n, sealed_head); the seal record itself is
        # the next one, so n must be sealed_n + 1 or the anchor was altered.
        sealed_n = anchor.get("sealed_n")
        n = anchor.get("n")
        if not isinstance(sealed_n, int) or n != sealed_n + 1:
            report.problems.append(f"anchor of stream {stream}: fields disagree with its "
                                   f"MAC (forged anchor)")
            continue
        state = report.streams.get(stream)
        if state is None:
            report.problems.append(
                f"{where}: stream {stream} is missing entirely (anchored up to record {n})")
        elif n not in state.hashes:
            report.problems.append(
                f"{where}: stream {stream} ends at record {state.n} but record {n} was sealed "
                f"and anchored (truncated)")
        elif state.hashes[n] != anchor.get("hash") or (
                sealed_n and state.hashes.get(sealed_n) != anchor.get("sealed_head")):
            report.problems.append(
                f"{where}: stream {stream} record {n} differs from the anchored seal")


def compare_sinks(reports: Mapping[str, VerifyReport]) -> list[str]:
    """Streams whose heads differ between sinks: one of them lost records."""
    problems = []
    names = list(reports)
    streams = set().union(*(r.streams for r in reports.values())) if reports else set()
    for stream in sorted(streams):
        heads = {name: reports[name].streams.get(stream) for name in names}
        ns = {name: (s.n if s else 0) for name, s in heads.items()}
        if len(set(ns.values())) > 1:
            detail = ", ".join(f"{name} has {n}" for name, n in sorted(ns.items()))
            problems.append(f"stream {stream}: sinks disagree on its length ({detail})")
    return problems


def verify_sinks(sinks: Iterable[Any], storage: Storage, sealing: SealingKeys
                 ) -> tuple[bool, dict[str, VerifyReport], list[str]]:
    """Verify every readable sink, its anchors, and the sinks against each other.

    Returns (all good, report per sink, cross-sink problems).
    """
    from .sinks import ReadableSink

    reports: dict[str, VerifyReport] = {}
    for index, sink in enumerate(sinks):
        if not isinstance(sink, ReadableSink):
            continue
        name = f"{sink.id}#{index}"
        report = verify_records(sink.read(), sealing, where=name)
        check_anchors(report, storage, sealing, where=name)
        reports[name] = report
    cross = compare_sinks(reports) if len(reports) > 1 else []
    ok = bool(reports) and all(r.ok for r in reports.values()) and not cross
    return ok, reports, cross

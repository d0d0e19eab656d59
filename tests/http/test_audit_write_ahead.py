"""No management change without its audit record: the write-ahead record.

The app runs in-process (httpx's ASGI transport) on a real embedded
deployment whose audit log writes through a sink that fails on its Nth
write, once or from then on (a disk that fills up). Whatever write fails,
the change either did not happen or has its ``started`` record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kmsframe.audit.log import AuditLog, AuditSettings
from kmsframe.audit.records import STARTED
from kmsframe.audit.sinks import StoreSink
from kmsframe.audit.verify import verify_records
from kmsframe.deployment import Deployment
from kmsframe.http import HttpSettings, build_app
from kmsframe.secrets import Secret
from kmsframe.testing import embedded_deployment

ROOT = "kmsf_root_write-ahead-" + "w" * 30


class FailsOnNthWrite:
    """A real store sink that fails on its Nth write from now, once or for good."""

    id = "nth"

    def __init__(self, inner: StoreSink) -> None:
        self.inner = inner
        self.writes = 0
        self.fail_from: int | None = None
        self.fail_once = True

    def arm(self, nth: int, *, once: bool) -> None:
        self.fail_from, self.fail_once = self.writes + nth, once

    def repair(self) -> None:
        self.fail_from = None

    def write(self, records: list[dict[str, Any]]) -> None:
        self.writes += 1
        if self.fail_from is not None and (self.writes == self.fail_from or
                                           (not self.fail_once and self.writes > self.fail_from)):
            raise OSError(28, "No space left on device")
        self.inner.write(records)

    def read(self) -> Any:
        return self.inner.read()

    def close(self) -> None:
        pass


class Served:
    def __init__(self, deployment: Deployment, sink: FailsOnNthWrite, app: Any) -> None:
        self.deployment, self.sink, self.app = deployment, sink, app

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kms",
                                         headers={"Authorization": f"Bearer {ROOT}"}) as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(go())

    def records(self, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.sink.read()
                if r.get("type") != "seal" and all(r.get(k) == v for k, v in match.items())]

    def settle(self) -> None:
        """Quiet the flusher, so the armed write is the request's own."""
        self.deployment.access.audit.flush()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    deployment = embedded_deployment(tmp_path / "kms")
    access = deployment.access
    access.audit.close()
    sink = FailsOnNthWrite(StoreSink(deployment.storage))
    access.audit = AuditLog([sink], deployment.storage, access.audit.sealing,
                            settings=AuditSettings(flush_interval=0.02))
    access.audit.start()
    deployment.service.create_key("k")
    app = build_app(lambda: deployment, HttpSettings(root_token=Secret.from_text(ROOT)))
    app.runtime.open()  # what the lifespan does in a worker
    try:
        yield Served(deployment, sink, app)
    finally:
        app.runtime.close()


def _primary(served: Served) -> int:
    return served.deployment.service.get_key("k").primary_version


@pytest.mark.parametrize("once", [True, False], ids=["fails-once", "fails-from-then-on"])
@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_a_change_is_never_stored_without_its_started_record(served: Served, nth: int,
                                                             once: bool) -> None:
    served.settle()
    served.sink.arm(nth, once=once)
    r = served.call("POST", "/v1/keys/k/rotate")
    rotated = _primary(served) == 10002
    started = served.records(action="keys.rotate", outcome=STARTED)
    if nth == 1:  # the write-ahead record failed: nothing ran
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert not rotated
        if not once:
            assert not started  # (once: the flusher's retry may have written it since)
    elif nth in (2, 3):  # the key change's or the outcome's record failed
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert rotated
        (record,) = started  # written before the change, durable whatever followed
        assert record["key"] == "k" and record["actor"] == "user:root" and record["request_id"]
    else:  # a rotation needs three writes: the fourth fails no one
        assert r.status_code == 200 and rotated and len(started) == 1
    # Once the sink works again, the records kept in memory are written, and
    # the call reads as one story under its request id.
    served.sink.repair()
    served.settle()
    (record,) = served.records(action="keys.rotate", outcome=STARTED)
    story = [(x["action"], x["outcome"]) for x in served.records(request_id=record["request_id"])]
    assert story[0] == ("keys.rotate", STARTED)
    changes = story[1:-1]  # the key's history entries (version.created, .rotated ...)
    assert all(action.startswith("version.") for action, _ in changes)
    if nth == 1:
        assert story[-1] == ("keys.rotate", "unavailable") and not changes
    elif nth == 2:  # the key change's record failed: the call failed
        assert story[-1] == ("keys.rotate", "unavailable")
        assert ("version.rotated", "ok") in changes
    else:  # the call succeeded (nth 3: its record was late, the caller told 503)
        assert story[-1] == ("keys.rotate", "ok") and ("version.rotated", "ok") in changes
    report = verify_records(served.sink.read(), served.deployment.access.audit.sealing)
    assert report.ok, report.problems


def test_a_create_whose_record_cannot_be_written_creates_nothing(served: Served) -> None:
    served.settle()
    served.sink.arm(1, once=False)
    r = served.call("POST", "/v1/keys", json={"name": "never"})
    assert r.status_code == 503
    served.sink.repair()
    assert served.call("GET", "/v1/keys/never").status_code == 404
    assert [k.name for k in served.deployment.service.list_keys()] == ["k"]


def test_search_shows_the_pair_and_reads_write_no_started_record(served: Served) -> None:
    assert served.call("PUT", "/v1/keys/k/conditions",
                       json={"conditions": {"source_ranges": ["10.0.0.0/8"]}}).status_code == 200
    assert served.call("GET", "/v1/keys/k").status_code == 200
    served.settle()
    found = served.call("GET", "/v1/audit", params={"key": "k"}).json()["records"]
    calls = [(r["action"], r["outcome"]) for r in reversed(found)
             if r["action"] in ("keys.conditions", "keys.read", "conditions.set")]
    changed = [r for r in found if r["action"] == "keys.conditions"]
    assert [r["outcome"] for r in reversed(changed)] == [STARTED, "ok"], calls
    assert changed[0]["request_id"] == changed[1]["request_id"]
    assert ("keys.read", STARTED) not in calls
    # Counting calls by outcome (as figures should) counts this one once.
    ok = served.call("GET", "/v1/audit", params={"key": "k", "outcome": "ok",
                                                 "action": "keys.conditions"}).json()
    assert len(ok["records"]) == 1
    # One call's records, whatever their action: started, the key's change, outcome.
    one = served.call("GET", "/v1/audit",
                      params={"request_id": changed[0]["request_id"]}).json()["records"]
    assert {r["request_id"] for r in one} == {changed[0]["request_id"]}
    assert [(r["action"], r["outcome"]) for r in one if r["action"] == "keys.conditions"] == \
        [("keys.conditions", "ok"), ("keys.conditions", STARTED)]
    assert len(one) >= 3, one  # the key's own history record is in it too
    assert served.call("GET", "/v1/audit", params={"request_id": "nope"}).json()["records"] == []


def test_a_failed_change_records_its_outcome_beside_its_started_record(served: Served) -> None:
    r = served.call("POST", "/v1/keys/missing/rotate")
    assert r.status_code == 404
    records = served.records(key="missing")
    assert [(x["action"], x["outcome"]) for x in records] == [
        ("keys.rotate", STARTED), ("keys.rotate", "key_not_found")]
    assert records[0]["request_id"] == records[1]["request_id"]

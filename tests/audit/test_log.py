"""Durability, batching, fail-closed behaviour and search of the audit log."""

import json
import time

import pytest

from kmsframe.audit.chain import Chain
from kmsframe.audit.log import AuditLog, AuditSettings
from kmsframe.audit.records import AuditEvent
from kmsframe.audit.search import AuditQuery, search
from kmsframe.audit.sinks import StoreSink
from kmsframe.audit.verify import verify_records
from kmsframe.authorization import Principal
from kmsframe.errors import ConfigurationError, InvalidRequest, Unavailable

APP = Principal(id="billing", kind="app", roles=frozenset({"app"}))
USER = Principal(id="alice", kind="user", roles=frozenset({"key_admin"}))


class FlakySink:
    """A real sink wrapper that can be made to fail, to test fail-closed."""

    id = "flaky"

    def __init__(self, inner):
        self.inner = inner
        self.broken = False

    def write(self, records):
        if self.broken:
            raise OSError("disk full")
        self.inner.write(records)

    def read(self):
        return self.inner.read()

    def close(self):
        pass


@pytest.fixture
def flaky(deployment):
    access = deployment.access
    access.audit.close()
    sink = FlakySink(StoreSink(deployment.storage))
    access.audit = AuditLog([sink], deployment.storage, access.audit.sealing,
                            settings=AuditSettings(flush_interval=0.01))
    access.audit.start()
    deployment.service.create_key("k")
    deployment.service.bind_app("k", "billing", ["encrypt"])
    return deployment, sink


def encrypt(d):
    return d.access.crypto(APP, "encrypt", "k", lambda: d.service.encrypt("k", b"x", principal=APP))


def test_management_records_are_durable_when_the_call_returns(deployment):
    deployment.service.create_key("k")  # no flush, no close
    records = list(deployment.access.audit.sinks[0].read())
    created = [r for r in records if r.get("action") == "key.created"]
    assert created and created[0]["key"] == "k" and created[0]["actor"] == "system:system"


def test_crypto_records_are_written_in_batches_by_the_flusher(deployment):
    deployment.service.create_key("k")
    deployment.service.bind_app("k", "billing", ["encrypt"])
    sink = deployment.access.audit.sinks[0]
    for _ in range(50):
        encrypt(deployment)
    deadline = time.time() + 5
    while time.time() < deadline:
        if sum(1 for r in sink.read() if r.get("action") == "encrypt") == 50:
            break
        time.sleep(0.02)
    assert sum(1 for r in sink.read() if r.get("action") == "encrypt") == 50
    batches = deployment.storage.read_log("audit")
    assert len(batches) < 50  # many records per store write


def test_crypto_is_refused_while_the_sink_fails_and_resumes_without_loss(flaky):
    d, sink = flaky
    encrypt(d)
    sink.broken = True
    d.access.audit.flush()  # the queued record fails to write
    with pytest.raises(Unavailable):
        encrypt(d)
    with pytest.raises(Unavailable):
        d.access.manage(USER, "keys.create", "keys.create", lambda: None)
    sink.broken = False
    d.access.audit.flush()
    encrypt(d)
    d.access.audit.flush()
    report = verify_records(sink.read(), d.access.audit.sealing)
    assert report.ok, report.problems
    assert sum(1 for r in sink.read() if r.get("action") == "encrypt") == 2


def test_a_failing_management_record_fails_the_call(flaky):
    d, sink = flaky
    sink.broken = True
    with pytest.raises(Unavailable):
        d.service.rotate("k")


def test_fail_open_keeps_serving_but_says_so(deployment):
    access = deployment.access
    access.audit.close()
    sink = FlakySink(StoreSink(deployment.storage))
    access.audit = AuditLog([sink], deployment.storage, access.audit.sealing,
                            settings=AuditSettings.from_mapping({"fail_open": True}))
    deployment.service.create_key("k")
    sink.broken = True
    access.audit.flush()
    access.audit.check_writable()  # does not raise
    access.audit.record_batched(AuditEvent(at=1.0, actor="app:x", action="encrypt"))
    access.audit.flush()
    assert not access.audit.healthy


def test_unknown_audit_settings_are_refused():
    with pytest.raises(ConfigurationError):
        AuditSettings.from_mapping({"flush_every": 1})


def test_records_never_hold_plaintext_or_key_material(deployment):
    s = deployment.service
    s.create_key("k")
    s.bind_app("k", "billing", ["encrypt", "decrypt", "datakey"])
    access = deployment.access
    text = access.crypto(APP, "encrypt", "k",
                         lambda: s.encrypt("k", b"PLAINTEXT-MARKER", principal=APP)).ciphertext
    access.crypto(APP, "decrypt", "k", lambda: s.decrypt("k", text, principal=APP))
    dk = access.crypto(APP, "datakey", "k", lambda: s.generate_data_key("k", principal=APP))
    access.audit.flush()
    dump = json.dumps(list(access.audit.sinks[0].read()))
    assert "PLAINTEXT-MARKER" not in dump
    assert text[5:] not in dump and dk.ciphertext[5:] not in dump
    assert dk.plaintext.reveal().hex() not in dump


def test_search_by_key_app_user_time_and_outcome():
    chain = Chain("s")
    events = [
        AuditEvent(at=100, actor="app:billing", action="encrypt", key="cards", version=10001),
        AuditEvent(at=200, actor="app:payroll", action="decrypt", key="salaries",
                   outcome="permission_denied"),
        AuditEvent(at=300, actor="user:alice", action="keys.rotate", key="cards"),
        AuditEvent(at=400, actor="user:bob", action="approvals.approve", target="apr-1"),
    ]
    records = [chain.link(e.to_dict()) for e in events]
    records.append(chain.seal(b"k" * 32, "sk", 500))

    def actions(**q):
        return [r["action"] for r in search(records, AuditQuery(**q))]

    assert actions(key="cards") == ["keys.rotate", "encrypt"]
    assert actions(app="payroll") == ["decrypt"]
    assert actions(user="alice") == ["keys.rotate"]
    assert actions(since=200, until=400) == ["keys.rotate", "decrypt"]
    assert actions(outcome="permission_denied") == ["decrypt"]
    assert actions(limit=1) == ["approvals.approve"]
    assert "seal" not in str(actions())
    with pytest.raises(InvalidRequest):
        AuditQuery(limit=0)


from hypothesis import given
from hypothesis import strategies as st

from kmsframe.audit.chain import canonical_text, record_hash

_text = st.text(max_size=20)
_opt = st.one_of(st.none(), _text)


@given(at=st.floats(min_value=0, max_value=4e9, allow_nan=False), actor=_text, action=_text,
       outcome=_text, key=_opt, version=st.one_of(st.none(), st.integers(10001, 99999)),
       source=_opt, detail=_opt)
def test_the_fast_crypto_encoding_is_the_canonical_one(at, actor, action, outcome, key,
                                                      version, source, detail):
    fast, slow = Chain("s"), Chain("s")
    line = fast.link_crypto(at, actor, action, outcome, key, version, source, detail)
    fields = {k: v for k, v in dict(at=at, actor=actor, action=action, outcome=outcome, key=key,
                                    version=version, source=source, detail=detail).items()
              if v is not None}
    record = slow.link(fields)
    assert json.loads(line) == record
    assert record_hash(json.loads(line)) == record["hash"] == fast.head
    assert canonical_text(record) == canonical_text(json.loads(line))

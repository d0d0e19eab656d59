"""The audit log shows any edit, deletion, reordering or truncation."""

import json

import pytest
import sqlalchemy as sa

from kmsframe.audit.chain import record_hash
from kmsframe.audit.verify import verify_sinks
from kmsframe.authorization import Principal
from kmsframe.testing import embedded_deployment

APP = Principal(id="billing", kind="app", roles=frozenset({"app"}))
SINKS = {"audit": {"sinks": [{"type": "jsonl"}, {"type": "store"}]}}


def produce(path):
    """A closed stream with management, crypto and denial records in both sinks."""
    d = embedded_deployment(path, extra=SINKS)
    try:
        d.service.create_key("k")
        d.service.bind_app("k", "billing", ["encrypt"])
        for i in range(10):
            d.access.crypto(APP, "encrypt", "k", lambda: d.service.encrypt("k", b"x", principal=APP))
        d.access.audit.flush()
        d.service.rotate("k")
        for i in range(5):
            d.access.crypto(APP, "encrypt", "k", lambda: d.service.encrypt("k", b"y", principal=APP))
    finally:
        d.close()


def verify(path):
    d = embedded_deployment(path, extra=SINKS)
    try:
        return verify_sinks(d.access.audit.sinks, d.storage, d.access.audit.sealing)
    finally:
        d.close()


def problems(path):
    ok, reports, cross = verify(path)
    return [p for r in reports.values() for p in r.problems] + cross


@pytest.fixture
def kms(tmp_path):
    path = tmp_path / "kms"
    produce(path)
    return path


def jsonl(path):
    return path / "audit.jsonl"


def lines(path):
    return jsonl(path).read_text().splitlines()


def write_lines(path, new):
    jsonl(path).write_text("".join(line + "\n" for line in new))


def test_an_untouched_log_verifies(kms):
    ok, reports, cross = verify(kms)
    assert ok, (reports, cross)
    jsonl_report = next(r for name, r in reports.items() if name.startswith("jsonl"))
    assert jsonl_report.records >= 20
    assert not jsonl_report.warnings  # the stream was closed with a seal


def test_an_edited_record_is_detected(kms):
    rows = lines(kms)
    i = next(i for i, line in enumerate(rows) if '"action":"encrypt"' in line)
    rows[i] = rows[i].replace('"outcome":"ok"', '"outcome":"permission_denied"')
    write_lines(kms, rows)
    assert any("edited" in p for p in problems(kms))


def test_an_edit_with_a_recomputed_chain_breaks_the_seal(kms):
    records = [json.loads(line) for line in lines(kms)]
    first = records[0]["stream"]
    stream = [r for r in records if r["stream"] == first]
    stream[2]["actor"] = "app:someone-else"
    prev = stream[1]["hash"]
    for r in stream[2:]:  # the forger re-links everything after the edit
        r["prev"] = prev
        if r["type"] == "seal":
            r["sealed_head"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
    write_lines(kms, [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in records])
    found = problems(kms)
    assert any("seal MAC is wrong" in p for p in found), found


def test_a_deleted_record_is_detected(kms):
    rows = lines(kms)
    del rows[3]
    write_lines(kms, rows)
    assert any("missing (deleted)" in p for p in problems(kms))


def test_reordered_records_are_detected(kms):
    rows = lines(kms)
    rows[3], rows[4] = rows[4], rows[3]
    write_lines(kms, rows)
    assert any("out of order" in p or "missing" in p for p in problems(kms))


@pytest.mark.parametrize("cut", [1, 3, 8])
def test_a_truncated_tail_is_detected(kms, cut):
    rows = lines(kms)
    first = json.loads(rows[0])["stream"]
    mine = [i for i, line in enumerate(rows) if json.loads(line)["stream"] == first]
    for i in reversed(mine[-cut:]):
        del rows[i]
    write_lines(kms, rows)
    assert any("truncated" in p for p in problems(kms))


def test_a_deleted_stream_is_detected(kms):
    rows = lines(kms)
    first = json.loads(rows[0])["stream"]
    write_lines(kms, [line for line in rows if json.loads(line)["stream"] != first])
    assert any("missing entirely" in p for p in problems(kms))


def test_a_forged_anchor_is_detected(kms):
    d = embedded_deployment(kms, extra=SINKS)
    try:
        doc = d.storage.list("audit_anchor")[0]
        d.storage.put("audit_anchor", doc.id, {**doc.data, "n": 1}, doc.revision)
    finally:
        d.close()
    assert any("forged anchor" in p for p in problems(kms))


def test_tampering_in_the_sql_store_is_detected(kms):
    engine = sa.create_engine(f"sqlite:///{kms / 'kms.db'}")
    with engine.begin() as conn:
        seq, data = conn.execute(sa.text(
            "SELECT seq, data FROM kms_logs WHERE log = 'audit' ORDER BY seq LIMIT 1")).one()
        entry = json.loads(data)
        assert '"key":"k"' in entry["lines"]
        entry["lines"] = entry["lines"].replace('"key":"k"', '"key":"another-key"', 1)
        conn.execute(sa.text("UPDATE kms_logs SET data = :d WHERE log = 'audit' AND seq = :s"),
                     {"d": json.dumps(entry), "s": seq})
    engine.dispose()
    found = problems(kms)
    assert any(p.startswith("store") and "edited" in p for p in found), found


def test_sinks_that_disagree_are_reported(kms):
    engine = sa.create_engine(f"sqlite:///{kms / 'kms.db'}")
    with engine.begin() as conn:  # drop the store's last batch (and its closing seal)
        conn.execute(sa.text("DELETE FROM kms_logs WHERE log = 'audit' AND seq = "
                             "(SELECT MAX(seq) FROM kms_logs WHERE log = 'audit')"))
    engine.dispose()
    assert any("truncated" in p or "disagree" in p for p in problems(kms))


def test_corrupt_lines_are_reported(kms):
    rows = lines(kms)
    rows[2] = rows[2][:-5]
    write_lines(kms, rows)
    assert any("not JSON" in p for p in problems(kms))

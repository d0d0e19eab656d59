"""``kmsframe audit verify|search``, ``users`` and ``bindings`` commands."""

import json

from click.testing import CliRunner

from kmsframe.cli import main


def run(data_dir, *args):
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


def test_cli_audit_round_trip(tmp_path):
    d = tmp_path / "d"
    assert run(d, "init")[0] == 0
    assert run(d, "keys", "create", "k1")[0] == 0
    code, out = run(d, "bindings", "set", "k1", "billing", "encrypt", "decrypt")
    assert code == 0 and json.loads(out) == {"billing": ["decrypt", "encrypt"]}
    code, out = run(d, "users", "create", "alice", "--role", "key_admin")
    assert code == 0 and "otpauth://totp/" in out
    code, out = run(d, "audit", "verify")
    assert code == 0 and "audit log verified" in out
    code, out = run(d, "audit", "search", "--key", "k1")
    records = [json.loads(line) for line in out.splitlines()]
    # Newest first; each local change bracketed: started, the key's record, outcome.
    assert [(r["action"], r.get("outcome", "ok")) for r in records] == [
        ("keys.bind", "ok"), ("binding.set", "ok"), ("keys.bind", "started"),
        ("keys.create", "ok"), ("key.created", "ok"), ("keys.create", "started")]
    assert len({r["request_id"] for r in records[:3]}) == 1
    assert records[0]["request_id"] != records[3]["request_id"]
    code, out = run(d, "audit", "search", "--action", "users.create")
    assert json.loads(out.splitlines()[0])["target"] == "alice"
    code, out = run(d, "audit", "search", "--request-id", records[0]["request_id"])
    assert [json.loads(line)["action"] for line in out.splitlines()] == \
        ["keys.bind", "binding.set", "keys.bind"]
    code, out = run(d, "audit", "search", "--request-id", "0123456789abcdef")
    assert code == 0 and out == ""


def test_a_local_change_does_not_run_if_its_started_record_cannot_be_written(tmp_path):
    d = tmp_path / "d"
    run(d, "init")
    run(d, "keys", "create", "k1")
    log = d / "audit.jsonl"  # the default sink: make it unwritable (a directory)
    log.rename(d / "audit.jsonl.kept")
    log.mkdir()
    assert run(d, "keys", "show", "k1")[0] == 0  # the deployment opens; reads need no record
    code, out = run(d, "keys", "rotate", "k1")
    assert code == 1 and "unavailable" in out, out
    log.rmdir()
    (d / "audit.jsonl.kept").rename(log)
    code, out = run(d, "keys", "show", "k1")
    assert json.loads(out)["primary_version"] == 10001  # nothing ran


def test_cli_audit_verify_fails_on_tampering(tmp_path):
    d = tmp_path / "d"
    run(d, "init")
    run(d, "keys", "create", "k1")
    log = d / "audit.jsonl"  # the default sink
    assert '"key":"k1"' in log.read_text()
    log.write_text(log.read_text().replace('"key":"k1"', '"key":"k2"'))
    code, out = run(d, "audit", "verify")
    assert code == 1 and "FAILED" in out and "edited" in out


def test_cli_bad_binding_is_a_clean_error(tmp_path):
    d = tmp_path / "d"
    run(d, "init")
    run(d, "keys", "create", "k1")
    code, out = run(d, "bindings", "set", "k1", "billing", "sign")
    assert code == 1 and "invalid_request" in out and "Traceback" not in out

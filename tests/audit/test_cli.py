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
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert actions == ["binding.set", "key.created"]
    code, out = run(d, "audit", "search", "--action", "users.create")
    assert json.loads(out.splitlines()[0])["target"] == "alice"
    # Local changes carry no HTTP request id: the filter finds none of them.
    code, out = run(d, "audit", "search", "--request-id", "0123456789abcdef")
    assert code == 0 and out == ""


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

"""The kmsframe command line on the embedded deployment."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kmsframe.cli import main


def run(data_dir: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], input=input)
    return result.exit_code, result.stdout, result.stderr


def test_init_create_encrypt_decrypt_rotate(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "init")
    assert code == 0 and "master key mk-" in out and "software HSM" in err
    assert (tmp_path / "unseal.secret").stat().st_mode & 0o077 == 0
    code, out, _ = run(tmp_path, "init")
    assert code == 0 and "already initialised" in out

    code, out, _ = run(tmp_path, "keys", "create", "payments", "--rotation-period", "90d",
                       "--notice", "7d")
    summary = json.loads(out)
    assert code == 0 and summary["rotation_policy"] == {"period_seconds": 7776000,
                                                         "notice_seconds": 604800}
    code, ciphertext, _ = run(tmp_path, "encrypt", "payments", "--context", "app=shop",
                              input="card 4111")
    assert code == 0 and ciphertext.startswith("10001")
    code, out, _ = run(tmp_path, "decrypt", "payments", ciphertext, "--context", "app=shop")
    assert code == 0 and out == "card 4111\n"

    code, out, _ = run(tmp_path, "keys", "rotate", "payments", "--reason", "drill")
    assert code == 0 and json.loads(out)["primary_version"] == 10002
    code, out, _ = run(tmp_path, "decrypt", "payments", ciphertext, "--context", "app=shop",
                       "--base64")
    assert code == 0 and out.strip() == "Y2FyZCA0MTEx"
    code, out, _ = run(tmp_path, "keys", "list")
    assert "payments\taes-256-gcm\tenabled\tprimary=10002" in out
    code, out, _ = run(tmp_path, "keys", "show", "payments", "--history")
    assert any(h.get("reason") == "drill" for h in json.loads(out)["history"])


def test_errors_are_one_clean_line(tmp_path: Path) -> None:
    run(tmp_path, "init")
    code, _, err = run(tmp_path, "decrypt", "nope", "10001AAAA")
    assert code == 1 and err.strip() == "error: key_not_found: no key named 'nope'"
    run(tmp_path, "keys", "create", "k")
    code, _, err = run(tmp_path, "decrypt", "k", "10001" + "A" * 40)
    assert code == 1 and err.strip() == "error: decryption_failed: decryption failed"
    assert "Traceback" not in err


def test_lifecycle_commands(tmp_path: Path) -> None:
    run(tmp_path, "init")
    run(tmp_path, "keys", "create", "k")
    run(tmp_path, "keys", "rotate", "k")
    for args, check in [
        (("keys", "rollback", "k"), lambda s: s["primary_version"] == 10001),
        (("keys", "disable", "k"), lambda s: s["status"] == "disabled"),
        (("keys", "enable", "k"), lambda s: s["status"] == "enabled"),
        (("keys", "schedule-deletion", "k", "--days", "7"), lambda s: s["status"] == "pending_deletion"),
        (("keys", "cancel-deletion", "k"), lambda s: s["status"] == "disabled"),
        (("keys", "set-version-state", "k", "10002", "retired"),
         lambda s: s["versions"][1]["state"] == "retired"),
        (("keys", "set-min-decryption-version", "k", "10001"),
         lambda s: s["min_decryption_version"] == 10001),
    ]:
        code, out, err = run(tmp_path, *args)
        assert code == 0, err
        assert check(json.loads(out)), (args, out)
    code, out, _ = run(tmp_path, "keys", "run-scheduler")
    assert code == 0 and json.loads(out)["failed"] == []


def test_plugins_command_lists_installed_and_active(tmp_path: Path) -> None:
    run(tmp_path, "init")
    code, out, _ = run(tmp_path, "plugins")
    assert code == 0
    assert "[active] hsm_soft" in out and "algorithms  aes-256-gcm" in out
    assert "selected: hsm=soft storage=sql" in out

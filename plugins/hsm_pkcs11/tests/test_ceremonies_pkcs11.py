"""Master-key ceremonies on SoftHSM2: rotation under live traffic, the CLI
under dual control, restore into a replacement token, retiring the old key."""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from kmsframe_hsm_pkcs11.testing import deployment_toml

from kmsframe import ceremonies
from kmsframe.cli import main
from kmsframe.config import DeploymentConfig
from kmsframe.deployment import Deployment
from kmsframe.errors import Conflict, InvalidRequest
from kmsframe.testing.people import approved_master_key_request


def approved(toml, operation: str, params: dict | None = None) -> str:
    """The id of an ``operation`` request the default quorum approved."""
    with Deployment.open(DeploymentConfig.load(toml)) as d:
        request = approved_master_key_request(d, operation, params)
    assert request.status == "executed", request
    assert request.result["ceremony"] == f"kmsframe hsm {operation[3:]} --approval {request.id}"
    return request.id


@pytest.mark.parametrize("mechanism", ["aes-gcm", "aes-key-wrap-pad"])
def test_rotation_under_live_traffic(make_realm, key_label, tmp_path, mechanism) -> None:
    realm = make_realm("kms-a")
    toml = deployment_toml(tmp_path, [(realm, "kms-a")], key_label, mechanism=mechanism,
                           keys="cache_ttl_seconds = 0.0001")
    assert CliRunner().invoke(main, ["--config", str(toml), "init"]).exit_code == 0
    with Deployment.open(DeploymentConfig.load(toml)) as d:
        service = d.service
        for name in ("k1", "k2", "k3"):
            service.create_key(name)
            service.rotate(name)
        texts = {name: service.encrypt(name, name.encode()).ciphertext for name in ("k1", "k2", "k3")}
        old_mk = d.hsm.status().master_key_id
        stop = threading.Event()
        errors: list[BaseException] = []
        done = [0]

        def traffic() -> None:
            try:
                while not stop.is_set():
                    for name, text in texts.items():
                        assert service.decrypt(name, text) == name.encode()
                        fresh = service.encrypt(name, b"live").ciphertext
                        assert service.decrypt(name, fresh) == b"live"
                        done[0] += 1
            except BaseException as exc:  # noqa: BLE001 - re-raised by the assertion below
                errors.append(exc)

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            new, report = ceremonies.rotate_master_key(d.hsm, service.keys, actor="test")
        finally:
            stop.set()
            worker.join()
        assert errors == [] and done[0] > 0
        assert report.complete and report.versions_rewrapped == 6
        assert ceremonies.references(service.keys, old_mk) == []
        # The old key can now go; afterwards everything still opens.
        with pytest.raises(Conflict):
            ceremonies.retire_master_key(d.hsm, service.keys, new.master_key_id)
        assert ceremonies.retire_master_key(d.hsm, service.keys, old_mk) == ["kms-a"]
        assert [k["id"] for k in d.hsm.master_keys()["kms-a"]] == [new.master_key_id]
        service.cache.invalidate()
        for name, text in texts.items():
            assert service.decrypt(name, text) == name.encode()


def test_retire_refused_while_versions_need_it(make_realm, key_label, tmp_path) -> None:
    realm = make_realm("kms-a")
    toml = deployment_toml(tmp_path, [(realm, "kms-a")], key_label)
    CliRunner().invoke(main, ["--config", str(toml), "init"])
    with Deployment.open(DeploymentConfig.load(toml)) as d:
        d.service.create_key("k")
        old = d.hsm.status().master_key_id
        ceremonies.generate_master_key(d.hsm)
        with pytest.raises(Conflict, match="1 key version"):
            ceremonies.retire_master_key(d.hsm, d.service.keys, old)
        assert old in [k["id"] for k in d.hsm.master_keys()["kms-a"]]


def test_cli_ceremony_with_shares_and_replacement_token(make_realm, key_label, tmp_path) -> None:
    a, b = make_realm("kms-a"), make_realm("kms-b")
    runner = CliRunner()
    pair = deployment_toml(tmp_path / "pair", [(a, "kms-a"), (b, "kms-b")], key_label)
    result = runner.invoke(main, ["--config", str(pair), "init", "--shares", "3",
                                  "--threshold", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("unseal share: kms-mk-share:1:") == 3
    result = runner.invoke(main, ["--config", str(pair), "keys", "create", "payments"])
    assert result.exit_code == 0, result.output
    text = runner.invoke(main, ["--config", str(pair), "encrypt", "payments", "4111"]).output.strip()

    rotation = approved(pair, "mk.rotate", {"custodians": {"shares": 3, "threshold": 2}})
    result = runner.invoke(main, ["--config", str(pair), "hsm", "rotate", "--approval", rotation])
    assert result.exit_code == 0, result.output
    shares = [line.split(": ", 1)[1] for line in result.output.splitlines()
              if line.startswith("custodian share: ")]
    assert len(shares) == 3
    assert '"versions_rewrapped": 1' in result.output and '"complete": true' in result.output

    status = runner.invoke(main, ["--config", str(pair), "hsm", "status"])
    assert status.exit_code == 0 and status.output.count('"up": true') == 2

    # Token kms-b is lost; a blank replacement (new realm, same label) is loaded
    # from two custodians' shares of each master key still in use.
    c = make_realm("kms-b")
    replaced = deployment_toml(tmp_path / "replaced", [(a, "kms-a"), (c, "kms-b")], key_label)
    replaced.write_text(replaced.read_text().replace(
        str(tmp_path / "replaced" / "kms.db"), str(tmp_path / "pair" / "kms.db")).replace(
        f'data_dir = "{tmp_path / "replaced"}"', f'data_dir = "{tmp_path / "pair"}"'))
    files = []
    for i, share in enumerate(shares[1:]):
        path = tmp_path / f"share{i}"
        path.write_text(share + "\n")
        files += ["--share-file", str(path)]
    restore = approved(replaced, "mk.restore", {"tokens": ["kms-b"]})
    result = runner.invoke(main, ["--config", str(replaced), "hsm", "restore", *files,
                                  "--approval", restore])
    assert result.exit_code == 0, result.output
    assert '"loaded_into": [\n    "kms-b"\n  ]' in result.output
    # Only kms-b (the replacement) now serves: kms-a is taken away.
    only_c = deployment_toml(tmp_path / "only", [(c, "kms-b")], key_label)
    only_c.write_text(only_c.read_text().replace(
        str(tmp_path / "only" / "kms.db"), str(tmp_path / "pair" / "kms.db")))
    result = runner.invoke(main, ["--config", str(only_c), "decrypt", "payments", text])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "4111"


def test_cli_restore_refuses_too_few_shares(make_realm, key_label, tmp_path) -> None:
    a = make_realm("kms-a")
    toml = deployment_toml(tmp_path, [(a, "kms-a")], key_label)
    result = CliRunner().invoke(main, ["--config", str(toml), "init", "--shares", "3",
                                       "--threshold", "3"])
    share = next(line.split(": ", 1)[1] for line in result.output.splitlines()
                 if "share:" in line)
    path = tmp_path / "one"
    path.write_text(share)
    restore = approved(toml, "mk.restore")
    result = CliRunner().invoke(main, ["--config", str(toml), "hsm", "restore",
                                       "--share-file", str(path), "--approval", restore])
    assert result.exit_code == 1
    assert "needs 3 distinct shares" in result.output
    assert share.split(":")[5] not in result.output
    # The failed ceremony spent its approval: trying again needs a new one.
    result = CliRunner().invoke(main, ["--config", str(toml), "hsm", "restore",
                                       "--share-file", str(path), "--approval", restore])
    assert result.exit_code == 1
    assert f"request {restore} was already used (failed)" in result.output


@pytest.mark.parametrize("mechanism", ["aes-gcm", "aes-key-wrap-pad"])
def test_backup_reshares_for_new_custodians(make_realm, key_label, tmp_path, mechanism) -> None:
    a, b = make_realm("kms-a"), make_realm("kms-b")
    runner = CliRunner()
    toml = deployment_toml(tmp_path / "d", [(a, "kms-a")], key_label, mechanism=mechanism)
    result = runner.invoke(main, ["--config", str(toml), "init", "--shares", "3",
                                  "--threshold", "2"])
    old = [line.split(": ", 1)[1] for line in result.output.splitlines() if "share:" in line]
    files = []
    for i, share in enumerate(old[:2]):
        (tmp_path / f"old{i}").write_text(share)
        files += ["--share-file", str(tmp_path / f"old{i}")]
    backup = approved(toml, "mk.backup", {"shares": 5, "threshold": 3})
    result = runner.invoke(main, ["--config", str(toml), "hsm", "backup", *files,
                                  "--approval", backup])
    assert result.exit_code == 0, result.output
    new = [line.split(": ", 1)[1] for line in result.output.splitlines()
           if line.startswith("custodian share: ")]
    assert len(new) == 5 and not set(new) & set(old)
    assert new[0].split(":")[2] == old[0].split(":")[2]  # same master key id
    # Three of the new custodians load the key into another token; it opens
    # what the first token wrapped.
    with Deployment.open(DeploymentConfig.load(toml)) as d:
        d.service.create_key("k")
        text = d.service.encrypt("k", b"backed up").ciphertext
    other = deployment_toml(tmp_path / "o", [(b, "kms-b")], key_label, mechanism=mechanism)
    other.write_text(other.read_text().replace(str(tmp_path / "o" / "kms.db"),
                                               str(tmp_path / "d" / "kms.db")))
    for i, share in enumerate(new[2:]):
        (tmp_path / f"new{i}").write_text(share)
    # Token kms-b is blank and alone: nobody's second factor can be checked, so
    # the approval path is closed and disaster recovery is open — and only then.
    refused = runner.invoke(main, ["--config", str(toml), "hsm", "restore",
                                   "--disaster-recovery", "--share-file", str(tmp_path / "new0")])
    assert refused.exit_code == 1 and "still holds the master key" in refused.output
    result = runner.invoke(main, ["--config", str(other), "hsm", "restore", "--disaster-recovery"] +
                           [x for i in range(3) for x in ("--share-file", str(tmp_path / f"new{i}"))])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["--config", str(other), "decrypt", "k", text]).output.strip() == \
        "backed up"


def test_backup_refuses_shares_of_another_key(make_realm, key_label, tmp_path) -> None:
    a = make_realm("kms-a")
    runner = CliRunner()
    toml = deployment_toml(tmp_path, [(a, "kms-a")], key_label)
    runner.invoke(main, ["--config", str(toml), "init", "--shares", "2", "--threshold", "2"])
    # Shares of a key made elsewhere, claiming this key's id.
    from kmsframe_hsm_pkcs11.shares import split

    from kmsframe.secrets import KeyMaterial
    with Deployment.open(DeploymentConfig.load(toml)) as d:
        mk_id = d.hsm.status().master_key_id
        foreign = split(KeyMaterial(bytes(32)), mk_id, 2, 2)
        with pytest.raises(InvalidRequest, match="do not rebuild"):
            ceremonies.backup_master_key(d.hsm, foreign, count=3, threshold=2)


def test_cli_status_and_master_keys(make_realm, key_label, tmp_path) -> None:
    import json

    a = make_realm("kms-a")
    toml = deployment_toml(tmp_path, [(a, "kms-a")], key_label)
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(toml), "init"]).exit_code == 0
    with Deployment.open(DeploymentConfig.load(toml)) as d:  # in the token, once approved
        generated = approved_master_key_request(d, "mk.generate")
    new_id = generated.result["master_key_id"]
    result = runner.invoke(main, ["--config", str(toml), "hsm", "master-keys"])
    assert result.exit_code == 0, result.output
    keys = json.loads(result.output)["kms-a"]
    assert len(keys) == 2
    assert all(k["sensitive"] and not k["extractable"] and k["local"] for k in keys)
    status = json.loads(runner.invoke(main, ["--config", str(toml), "hsm", "status"]).output)
    assert status["backend"] == "pkcs11" and status["ready"] is True
    assert status["master_key_id"] == new_id and new_id in {k["id"] for k in keys}
    assert status["tokens"][0]["label"] == "kms-a" and status["tokens"][0]["up"] is True


def test_each_approval_runs_one_ceremony_and_no_share_is_kept(make_realm, key_label,
                                                              tmp_path) -> None:
    import json

    a = make_realm("kms-a")
    toml = deployment_toml(tmp_path, [(a, "kms-a")], key_label)
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(toml), "init"]).exit_code == 0

    def hsm(*args: str):
        return runner.invoke(main, ["--config", str(toml), "hsm", *args])

    generate = approved(toml, "mk.generate", {"custodians": {"shares": 3, "threshold": 2}})
    # An approval is for its own operation only, and a backup cannot start without one.
    refused = hsm("rotate", "--approval", generate)
    assert refused.exit_code == 1
    assert f"request {generate} approved mk.generate, not mk.rotate" in refused.output
    assert hsm("backup", "--prompt", "2").exit_code == 2
    result = hsm("generate", "--approval", generate)
    assert result.exit_code == 0, result.output
    shares = [line.split(": ", 1)[1] for line in result.output.splitlines()
              if line.startswith("custodian share: ")]
    mk_id = result.output.split()[2]
    assert len(shares) == 3 and all(f":{mk_id}:" in s for s in shares)
    assert json.loads(hsm("status").output)["master_key_id"] == mk_id
    again = hsm("generate", "--approval", generate)
    assert again.exit_code == 1 and "was already used (done)" in again.output
    assert json.loads(hsm("status").output)["master_key_id"] == mk_id

    # Back up with custodians typing two shares; new shares for 4 custodians.
    backup = approved(toml, "mk.backup", {"shares": 4, "threshold": 2})
    result = hsm("backup", "--approval", backup, "--prompt", "2")
    assert result.exit_code == 1  # no input: nothing typed, the prompt aborts
    result = runner.invoke(main, ["--config", str(toml), "hsm", "backup", "--approval", backup,
                                  "--prompt", "2"], input=f"{shares[0]}\n{shares[2]}\n")
    assert result.exit_code == 0, result.output
    new = [line.split(": ", 1)[1] for line in result.output.splitlines()
           if line.startswith("custodian share: ")]
    assert len(new) == 4

    # Everything the deployment stored or logged: approvals, tickets, audit.
    with Deployment.open(DeploymentConfig.load(toml)) as d:
        stored = json.dumps([doc.data for kind in ("approval", "ceremony_ticket")
                             for doc in d.storage.list(kind)])
        d.access.audit.flush()
    kept = stored + "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*")
                            if p.is_file() and p.suffix in (".jsonl", ".log", ".json"))
    for share in shares + new:
        assert share.split(":")[5] not in kept
    assert '"status": "done"' in stored and '"outcome": "ok"' in stored
    audit = [json.loads(line) for p in tmp_path.rglob("*.jsonl") for line in p.read_text().splitlines()]
    ran = [(r["action"], r["outcome"]) for r in audit
           if r.get("actor") in (f"approval:{generate}", f"approval:{backup}")
           and r["action"].startswith("mk.")]
    assert ran.count(("mk.generate", "ok")) == 1 and ("mk.generate", "permission_denied") in ran
    assert ran.count(("mk.generate", "started")) == 1  # written before the ticket was spent
    assert ("mk.backup", "started") in ran and ("mk.backup", "ok") in ran

"""Master-key ceremonies on the software HSM: the re-wrap loop is generic."""

from __future__ import annotations

import attrs
import pytest

from kmsframe import ceremonies
from kmsframe.errors import InvalidRequest
from kmsframe.keystore import KeyRepository


def _wrapped_ids(d) -> set[str]:
    return {v.wrapped.master_key_id for k in d.service.list_keys() for v in k.versions
            if v.wrapped is not None}


def test_rotate_rewraps_every_version_and_keeps_ciphertexts(deployment) -> None:
    service = deployment.service
    texts = {}
    for name in ("a", "b", "c"):
        service.create_key(name)
        texts[(name, 1)] = service.encrypt(name, b"one " + name.encode()).ciphertext
        service.rotate(name)
        texts[(name, 2)] = service.encrypt(name, b"two " + name.encode()).ciphertext
    old_mk = deployment.hsm.status().master_key_id
    before = {k.name: [(v.number, v.wrapped.blob) for v in k.versions] for k in service.list_keys()}

    new, report = ceremonies.rotate_master_key(deployment.hsm, service.keys, actor="test")

    assert new.master_key_id != old_mk and new.shares == ()
    assert report.complete and report.master_key_id == new.master_key_id
    versions = sum(len(v) for v in before.values())
    assert report.versions_rewrapped == versions and report.versions_already_current == 0
    assert report.keys_changed == report.keys_seen == len(before)
    assert _wrapped_ids(deployment) == {new.master_key_id}
    for key in service.list_keys():
        assert key.history[-1].action == "master_key.rewrapped"
        for v in key.versions:
            assert v.wrapped.blob != dict(before[key.name])[v.number]
    # A fresh service (empty cache) opens every old ciphertext through the new MK.
    service.cache.invalidate()
    for (name, n), text in texts.items():
        assert service.decrypt(name, text) == (b"one " if n == 1 else b"two ") + name.encode()
    assert ceremonies.references(service.keys, old_mk) == []
    # Running it again finds nothing to do.
    again = ceremonies.rewrap_working_keys(deployment.hsm, service.keys)
    assert again.versions_rewrapped == 0 and again.versions_already_current == versions


def test_rewrap_retries_a_key_that_changed_meanwhile(deployment) -> None:
    service = deployment.service
    service.create_key("busy")
    text = service.encrypt("busy", b"x").ciphertext
    deployment.hsm.generate_master_key()

    class RacingRepository(KeyRepository):
        """Rotates the key (a new version under the new MK) on the first save."""
        raced = False

        def update(self, name, change):
            if not self.raced:
                self.raced = True
                service.rotate(name)
            return super().update(name, change)

    repo = RacingRepository(service.keys.storage)
    report = ceremonies.rewrap_working_keys(deployment.hsm, repo)
    assert report.complete and report.versions_rewrapped == 1
    key = service.get_key("busy")
    assert len(key.versions) == 2
    assert {v.wrapped.master_key_id for v in key.versions} == {report.master_key_id}
    service.cache.invalidate()
    assert service.decrypt("busy", text) == b"x"


def test_unopenable_version_is_reported_not_written(deployment) -> None:
    service = deployment.service
    service.create_key("good")
    service.create_key("bad")
    deployment.hsm.generate_master_key()
    # Move "good"'s wrapped blob into "bad": it is bound to "good", so it must not open.
    good = service.get_key("good")
    service.keys.update("bad", lambda k: (attrs.evolve(k, versions=(
        attrs.evolve(k.versions[0], wrapped=good.versions[0].wrapped),)), None))
    bad_before = service.get_key("bad")
    report = ceremonies.rewrap_working_keys(deployment.hsm, service.keys)
    assert not report.complete
    assert [(f.key, f.version, f.code) for f in report.failures] == [("bad", 10001, "integrity_error")]
    assert service.get_key("bad").versions == bad_before.versions
    assert report.versions_rewrapped == 1


def test_soft_backend_refuses_share_ceremonies(deployment) -> None:
    with pytest.raises(InvalidRequest, match="shares"):
        ceremonies.generate_master_key(deployment.hsm, shares=3, threshold=2)
    with pytest.raises(InvalidRequest, match="back up"):
        ceremonies.backup_master_key(deployment.hsm, [], count=3, threshold=2)
    with pytest.raises(InvalidRequest, match="retire"):
        ceremonies.retire_master_key(deployment.hsm, deployment.service.keys, "mk-x")


def test_hsm_commands_on_the_embedded_deployment(tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from kmsframe.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), *args])
        return result.exit_code, result.stdout, result.stderr

    assert run("init")[0] == 0
    assert run("keys", "create", "payments")[0] == 0
    code, ciphertext, _ = run("encrypt", "payments", "4111")
    code, out, _ = run("hsm", "status")
    first = json.loads(out)["master_key_id"]
    assert code == 0 and json.loads(out)["backend"] == "soft"

    # The rotation itself runs in the service once its quorum approves.
    from kmsframe.testing import embedded_deployment
    from kmsframe.testing.people import approved_master_key_request

    with embedded_deployment(tmp_path) as d:
        done = approved_master_key_request(d, "mk.rotate")
    assert done.status == "executed"
    report = done.result["rewrap"]
    assert report["complete"] and report["versions_rewrapped"] == 1
    assert done.result["master_key_id"] != first
    code, out, _ = run("hsm", "status")
    assert json.loads(out)["master_key_id"] == done.result["master_key_id"]
    code, out, _ = run("hsm", "rewrap")
    assert code == 0 and json.loads(out)["versions_already_current"] == 1
    code, out, _ = run("decrypt", "payments", ciphertext.strip())
    assert code == 0 and out == "4111\n"
    code, _, err = run("hsm", "retire", first)
    assert code == 1 and "error: invalid_request: HSM backend 'soft' cannot retire" in err

"""Versions and lifecycle: rotation, rollback, states, deletion, history."""

from __future__ import annotations

import pytest

from kmsframe.errors import (
    AlreadyExists,
    DecryptionFailed,
    InvalidRequest,
    InvalidStateTransition,
    KeyNotFound,
    KeyPendingDeletion,
    UnsupportedAlgorithm,
    VersionNotFound,
)
from kmsframe.model import KeyStatus, VersionState
from kmsframe.service import KeyService


def states(service: KeyService, name: str) -> dict[int, str]:
    return {v.number: v.state.value for v in service.get_key(name).versions}


def test_create_validates_name_algorithm_and_uniqueness(service: KeyService) -> None:
    key = service.create_key("k", description="cards")
    assert key.primary_version == 10001 and key.algorithm == "aes-256-gcm"
    with pytest.raises(AlreadyExists):
        service.create_key("k")
    with pytest.raises(UnsupportedAlgorithm) as info:
        service.create_key("k2", algorithm="des-56")
    assert info.value.code == "unsupported_algorithm"
    for bad in ("", "has space", "x" * 129, "slash/name"):
        with pytest.raises(InvalidRequest):
            service.create_key(bad)
    with pytest.raises(InvalidRequest):
        service.create_key("k3", purpose="sign")


def test_rotation_keeps_old_versions_decrypting(service: KeyService) -> None:
    service.create_key("k")
    texts = []
    for expected in (10001, 10002, 10003):
        result = service.encrypt("k", b"data")
        assert result.version == expected
        texts.append(result.ciphertext)
        service.rotate("k", reason="policy")
    assert states(service, "k") == {10001: "expired", 10002: "expired", 10003: "expired",
                                    10004: "active"}
    assert all(service.decrypt("k", t) == b"data" for t in texts)
    assert service.get_key("k").primary_version == 10004


def test_exactly_one_primary_active_version(service: KeyService) -> None:
    service.create_key("k")
    for _ in range(3):
        service.rotate("k")
    service.rollback("k")
    key = service.get_key("k")
    active = [v for v in key.versions if v.state is VersionState.ACTIVE]
    assert [v.number for v in active] == [key.primary_version]


def test_rollback_returns_to_the_previous_stable_version(service: KeyService) -> None:
    service.create_key("k")
    service.rotate("k")
    bad = service.encrypt("k", b"made with the bad version").ciphertext
    key = service.rollback("k", reason="10002 is suspect")
    assert key.primary_version == 10001
    assert service.encrypt("k", b"x").version == 10001
    # Data made with the rolled-back version still opens (it is only expired).
    assert service.decrypt("k", bad) == b"made with the bad version"
    assert states(service, "k") == {10001: "active", 10002: "expired"}
    assert key.history[-1].reason == "10002 is suspect"


def test_rollback_without_an_earlier_version_is_refused(service: KeyService) -> None:
    service.create_key("k")
    with pytest.raises(InvalidStateTransition) as info:
        service.rollback("k")
    assert info.value.code == "invalid_state_transition"


def test_retired_version_no_longer_decrypts_and_can_come_back(service: KeyService) -> None:
    service.create_key("k")
    old = service.encrypt("k", b"x").ciphertext
    service.rotate("k")
    service.set_version_state("k", 10001, "retired", reason="end of transition")
    with pytest.raises(DecryptionFailed):
        service.decrypt("k", old)
    service.set_version_state("k", 10001, "expired", reason="needed again")
    assert service.decrypt("k", old) == b"x"


def test_destroyed_version_loses_its_material_but_keeps_metadata(service: KeyService) -> None:
    service.create_key("k")
    old = service.encrypt("k", b"x").ciphertext
    service.rotate("k")
    with pytest.raises(InvalidStateTransition):
        service.set_version_state("k", 10001, "destroyed")  # must be retired first
    service.set_version_state("k", 10001, "retired")
    service.set_version_state("k", 10001, "destroyed", reason="ticket 42")
    version = service.get_key("k").version(10001)
    assert version is not None and version.wrapped is None and version.destroyed_at is not None
    with pytest.raises(DecryptionFailed):
        service.decrypt("k", old)
    with pytest.raises(InvalidStateTransition):
        service.set_version_state("k", 10001, "expired")


def test_compromised_version_stops_decrypting(service: KeyService) -> None:
    service.create_key("k")
    old = service.encrypt("k", b"x").ciphertext
    service.rotate("k")
    service.set_version_state("k", 10001, VersionState.COMPROMISED, reason="leak")
    with pytest.raises(DecryptionFailed):
        service.decrypt("k", old)


def test_primary_cannot_change_state_directly(service: KeyService) -> None:
    service.create_key("k")
    for state in ("retired", "compromised", "active", "pre_active", "nonsense"):
        with pytest.raises((InvalidStateTransition, InvalidRequest)):
            service.set_version_state("k", 10001, state)
    with pytest.raises(VersionNotFound):
        service.set_version_state("k", 10009, "retired")


def test_minimum_decryption_version(service: KeyService) -> None:
    service.create_key("k")
    old = service.encrypt("k", b"x").ciphertext
    service.rotate("k")
    service.set_min_decryption_version("k", 10002)
    with pytest.raises(DecryptionFailed):
        service.decrypt("k", old)
    with pytest.raises(VersionNotFound):
        service.set_min_decryption_version("k", 10003)
    service.announce_rotation("k")  # 10003 now exists, pre-active, above the primary
    with pytest.raises(InvalidRequest):
        service.set_min_decryption_version("k", 10003)
    # Rolling back below the minimum is impossible: nothing to roll back to.
    with pytest.raises(InvalidStateTransition):
        service.rollback("k")


def test_scheduled_deletion_waits_and_can_be_cancelled(service: KeyService, clock) -> None:
    service.create_key("k")
    text = service.encrypt("k", b"x").ciphertext
    key = service.schedule_deletion("k", reason="app retired")
    assert key.status is KeyStatus.PENDING_DELETION
    assert key.deletion_at == pytest.approx(clock.now + 30 * 86400)
    with pytest.raises(KeyPendingDeletion):
        service.decrypt("k", text)
    key = service.cancel_deletion("k")
    assert key.status is KeyStatus.DISABLED and key.deletion_at is None
    service.enable("k")
    assert service.decrypt("k", text) == b"x"


def test_deletion_waiting_period_is_configurable(service: KeyService, clock) -> None:
    service.create_key("k")
    key = service.schedule_deletion("k", waiting_days=7)
    assert key.deletion_at == pytest.approx(clock.now + 7 * 86400)
    with pytest.raises(InvalidRequest):
        service.schedule_deletion("k", waiting_days=-1)


def test_state_changes_on_unknown_keys(service: KeyService) -> None:
    for call in (service.rotate, service.rollback, service.disable, service.enable,
                 service.schedule_deletion, service.cancel_deletion):
        with pytest.raises(KeyNotFound):
            call("ghost")


def test_history_records_every_change_with_reasons(service: KeyService) -> None:
    service.create_key("k")
    service.rotate("k", reason="quarterly")
    service.disable("k", reason="incident 7")
    service.enable("k", reason="resolved")
    actions = [(h.action, h.reason) for h in service.get_key("k").history]
    assert actions[0] == ("key.created", None)
    assert ("version.rotated", "quarterly") in actions
    assert ("key.disabled", "incident 7") in actions
    assert actions[-1] == ("key.enabled", "resolved")


def test_key_summary_has_no_material(service: KeyService) -> None:
    key = service.create_key("k")
    text = repr(key) + str(key.summary())
    assert "blob" not in str(key.summary())
    wrapped = key.versions[0].wrapped
    assert wrapped is not None and wrapped.blob.hex() not in text

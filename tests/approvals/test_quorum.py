"""Dual control: quorum rules and their edge cases."""

import pytest

from kmsframe.approvals import ApprovalRule, quorum_met
from kmsframe.errors import (
    Conflict,
    InvalidRequest,
    PermissionDenied,
    Unauthenticated,
)
from kmsframe.testing import embedded_deployment
from kmsframe.testing.people import fresh_code, make_user

MK = [("operator", 1), ("security_admin", 3)]


@pytest.mark.parametrize(("approvers", "met"), [
    ({"a": {"security_admin"}, "b": {"security_admin"}, "c": {"security_admin"},
      "d": {"operator"}}, True),
    ({"a": {"security_admin"}, "b": {"security_admin"}, "c": {"security_admin"}}, False),
    # one person holding both roles fills one slot only
    ({"a": {"security_admin", "operator"}, "b": {"security_admin"},
      "c": {"security_admin"}}, False),
    # ... but is matched to whichever slot makes the quorum
    ({"a": {"security_admin", "operator"}, "b": {"security_admin"}, "c": {"security_admin"},
      "d": {"security_admin"}}, True),
    ({"a": {"operator"}, "b": {"operator"}, "c": {"security_admin"},
      "d": {"security_admin"}}, False),
    ({}, False),
])
def test_quorum_matching(approvers, met):
    assert quorum_met(MK, {k: frozenset(v) for k, v in approvers.items()}) is met


@pytest.mark.parametrize("bad", [{}, {"security_admin": 0}, {"wizard": 1}])
def test_bad_rules_are_refused(bad):
    with pytest.raises((ValueError, InvalidRequest)):
        ApprovalRule.of(bad)


@pytest.fixture
def people(deployment):
    for name in ("sa0", "sa1", "sa2", "sa3", "sa4"):
        make_user(deployment, name, "security_admin")
    make_user(deployment, "op1", "operator")
    make_user(deployment, "ka1", "key_admin")
    make_user(deployment, "aud", "auditor")
    return deployment


def principal(d, name):
    return d.access.users.get(name).principal()


def approve(d, request_id, name):
    return d.access.approvals.approve(request_id, principal(d, name), fresh_code(d, name))


def submit_mk(d, requester="sa0"):
    return d.access.approvals.submit("mk.generate", {}, principal(d, requester), reason="drill")


def test_master_key_generation_runs_after_three_security_admins_and_an_operator(people):
    d = people
    before = d.hsm.status().master_key_id
    request = submit_mk(d)
    assert request.status == "pending"
    for name in ("sa1", "sa2", "op1"):
        assert approve(d, request.id, name).status == "pending"
    assert d.hsm.status().master_key_id == before
    done = approve(d, request.id, "sa3")
    assert done.status == "executed"
    assert done.result["master_key_id"] == d.hsm.status().master_key_id != before


def test_requester_cannot_approve_their_own_request(people):
    request = submit_mk(people)
    with pytest.raises(PermissionDenied):
        approve(people, request.id, "sa0")
    assert people.access.approvals.get(request.id).approvals == ()


def test_a_user_counts_once(people):
    d = people
    request = submit_mk(d)
    approve(d, request.id, "sa1")
    with pytest.raises(Conflict):
        approve(d, request.id, "sa1")
    assert d.access.approvals.get(request.id).approvers == ["sa1"]


def test_a_user_with_two_roles_fills_one_slot(people):
    d = people
    d.access.users.grant("sa1", "operator")
    request = submit_mk(d)
    for name in ("sa1", "sa2", "sa3"):
        assert approve(d, request.id, name).status == "pending"
    assert approve(d, request.id, "op1").status == "executed"


@pytest.mark.parametrize("approver", ["ka1", "aud"])
def test_an_approver_without_a_required_role_is_denied(people, approver):
    request = submit_mk(people)
    with pytest.raises(PermissionDenied):
        approve(people, request.id, approver)
    assert people.access.approvals.get(request.id).approvals == ()


@pytest.mark.parametrize("revoke", ["disable", "role"])
def test_a_revoked_approvers_approval_no_longer_counts(people, revoke):
    d = people
    request = submit_mk(d)
    approve(d, request.id, "sa1")
    if revoke == "disable":
        d.access.users.disable("sa1")
    else:
        d.access.users.revoke_role("sa1", "security_admin")
    for name in ("sa2", "sa3", "op1"):
        assert approve(d, request.id, name).status == "pending"
    assert approve(d, request.id, "sa4").status == "executed"


def test_an_expired_request_cannot_be_approved(people):
    d = people
    request = submit_mk(d)
    approvals = d.access.approvals
    later = request.expires_at + 1
    approvals.clock = lambda: later
    with pytest.raises(Conflict, match="expired"):
        approve(d, request.id, "sa1")
    assert approvals.get(request.id).status == "expired"
    assert [r.id for r in approvals.list("expired")] == [request.id]


def test_a_wrong_second_factor_is_refused_and_not_counted(people):
    d = people
    request = submit_mk(d)
    with pytest.raises(Unauthenticated):
        d.access.approvals.approve(request.id, principal(d, "sa1"), "000000")
    assert d.access.approvals.get(request.id).approvals == ()


def test_a_rejection_ends_the_request(people):
    d = people
    request = submit_mk(d)
    approve(d, request.id, "sa1")
    rejected = d.access.approvals.reject(request.id, principal(d, "sa2"), fresh_code(d, "sa2"),
                                         reason="not scheduled")
    assert rejected.status == "rejected" and rejected.rejections[0]["user"] == "sa2"
    with pytest.raises(Conflict):
        approve(d, request.id, "sa3")


def test_outsiders_cannot_reject(people):
    d = people
    request = submit_mk(d)
    with pytest.raises(PermissionDenied):
        d.access.approvals.reject(request.id, principal(d, "aud"), fresh_code(d, "aud"))
    assert d.access.approvals.get(request.id).status == "pending"


def test_the_requester_can_withdraw(people):
    d = people
    request = submit_mk(d)
    out = d.access.approvals.reject(request.id, principal(d, "sa0"), fresh_code(d, "sa0"))
    assert out.status == "rejected"


@pytest.mark.parametrize("requester", ["aud", "ka1", "op1"])
def test_only_holders_of_the_permission_can_request(people, requester):
    with pytest.raises(PermissionDenied):
        submit_mk(people, requester)


def test_operations_without_an_executor_are_refused(people):
    del people.access.approvals.executors["mk.backup"]
    with pytest.raises(InvalidRequest, match="not available for approval"):
        people.access.approvals.submit("mk.backup", {"shares": 3, "threshold": 2},
                                       principal(people, "sa0"))


def test_an_executed_request_does_not_run_twice(people):
    d = people
    request = submit_mk(d)
    for name in ("sa1", "sa2", "sa3", "op1"):
        approve(d, request.id, name)
    mk = d.hsm.status().master_key_id
    with pytest.raises(Conflict):
        approve(d, request.id, "sa4")
    assert d.hsm.status().master_key_id == mk


def test_every_step_is_audited(people):
    d = people
    request = submit_mk(d)
    with pytest.raises(PermissionDenied):
        approve(d, request.id, "sa0")
    for name in ("sa1", "sa2", "sa3", "op1"):
        approve(d, request.id, name)
    records = [r for r in d.access.audit.sinks[0].read() if r.get("target") == request.id]
    steps = [(r["action"], r["actor"], r["outcome"]) for r in records]
    assert steps[0] == ("approvals.submit", "user:sa0", "ok")
    assert ("approvals.approve", "user:sa0", "permission_denied") in steps
    assert sum(1 for s in steps if s[0] == "approvals.approve" and s[2] == "ok") == 4
    assert steps[-1] == ("approvals.execute", f"approval:{request.id}", "ok")


def test_rules_are_configurable_per_operation(tmp_path):
    d = embedded_deployment(tmp_path / "kms", extra={
        "approvals": {"keys.rollback": {"key_admin": 2, "ttl_seconds": 60}}})
    try:
        for name in ("k0", "k1", "k2"):
            make_user(d, name, "key_admin")
        d.service.create_key("k")
        d.service.rotate("k")
        request = d.access.approvals.submit("keys.rollback", {"key": "k"}, principal(d, "k0"))
        assert request.expires_at - request.created_at == 60
        assert approve(d, request.id, "k1").status == "pending"
        assert approve(d, request.id, "k2").status == "executed"
        key = d.service.get_key("k")
        assert key.primary_version == 10001
        assert key.history[-1].actor == f"approval:{request.id}"
    finally:
        d.close()


def test_master_key_rotation_runs_after_the_quorum_and_rewraps_every_key(people):
    d = people
    d.service.create_key("k")
    text = d.service.encrypt("k", b"survives the ceremony").ciphertext
    before = d.hsm.status().master_key_id
    request = d.access.approvals.submit("mk.rotate", {}, principal(d, "sa0"), reason="annual")
    for name in ("sa1", "sa2", "op1"):
        assert approve(d, request.id, name).status == "pending"
    assert d.hsm.status().master_key_id == before
    done = approve(d, request.id, "sa3")
    assert done.status == "executed"
    new = done.result["master_key_id"]
    assert new == d.hsm.status().master_key_id != before
    assert done.result["rewrap"]["complete"] is True
    key = d.service.get_key("k")
    assert {v.wrapped.master_key_id for v in key.versions} == {new}
    d.service.cache.invalidate()
    assert d.service.decrypt("k", text) == b"survives the ceremony"

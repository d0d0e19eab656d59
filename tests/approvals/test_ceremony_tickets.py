"""Ceremony tickets: the single-use authorisation a share-moving master-key
ceremony needs, issued when its quorum approves."""

import pytest

from kmsframe.audit.search import AuditQuery, search
from kmsframe.audit.sinks import ReadableSink
from kmsframe.ceremony_tickets import CeremonyTickets
from kmsframe.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from kmsframe.testing.people import approved_master_key_request, master_key_quorum


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tickets(deployment):
    clock = Clock()
    return CeremonyTickets(deployment.storage, clock), clock


def test_a_ticket_runs_its_operation_once(tickets):
    store, _ = tickets
    store.issue("apr-1", "mk.backup", {"shares": 5, "threshold": 3}, 3600)
    assert store.check("apr-1", "mk.backup").params == {"shares": 5, "threshold": 3}
    claimed = store.claim("apr-1", "mk.backup")
    assert claimed.status == "claimed"
    with pytest.raises(PermissionDenied, match="already used"):
        store.claim("apr-1", "mk.backup")
    store.finish(claimed, "invalid_request")
    with pytest.raises(PermissionDenied, match="already used .failed."):
        store.check("apr-1", "mk.backup")


def test_a_ticket_is_only_for_its_own_operation(tickets):
    store, _ = tickets
    store.issue("apr-2", "mk.backup", {"shares": 5, "threshold": 3}, 3600)
    with pytest.raises(PermissionDenied, match="approved mk.backup, not mk.restore"):
        store.claim("apr-2", "mk.restore")
    assert store.check("apr-2", "mk.backup").status == "issued"  # not spent by the refusal


def test_a_ticket_expires(tickets):
    store, clock = tickets
    store.issue("apr-3", "mk.restore", {}, 60)
    clock.now += 59
    store.check("apr-3", "mk.restore")
    clock.now += 1
    with pytest.raises(PermissionDenied, match="expired"):
        store.claim("apr-3", "mk.restore")


def test_an_unknown_request_has_no_ticket_and_one_request_gets_one_ticket(tickets):
    store, _ = tickets
    with pytest.raises(NotFound):
        store.check("apr-nope", "mk.backup")
    store.issue("apr-4", "mk.backup", {}, 60)
    with pytest.raises(Conflict, match="already has a ceremony ticket"):
        store.issue("apr-4", "mk.backup", {}, 60)


def test_two_racing_claims_spend_it_once(tickets):
    store, _ = tickets
    store.issue("apr-5", "mk.restore", {}, 60)
    first = store.check("apr-5", "mk.restore")
    second = store.check("apr-5", "mk.restore")
    assert first.revision == second.revision
    store.claim("apr-5", "mk.restore")
    # The second host read the ticket before the first claimed it; its
    # compare-and-swap on the old revision must lose.
    import attrs
    from kmsframe.ceremony_tickets import CLAIMED
    from kmsframe.errors import ConcurrentModification
    with pytest.raises(ConcurrentModification):
        store.storage.put("ceremony_ticket", "apr-5",
                          attrs.evolve(second, status=CLAIMED).to_document(), second.revision)


@pytest.mark.parametrize(("operation", "params", "message"), [
    ("mk.backup", {}, "shares"),
    ("mk.backup", {"shares": 3, "threshold": 4}, "threshold <= shares"),
    ("mk.backup", {"shares": 3, "threshold": 1}, "2 <= threshold"),
    ("mk.backup", {"shares": 256, "threshold": 2}, "255"),
    ("mk.backup", {"shares": 3, "threshold": True}, "threshold"),
    ("mk.backup", {"shares": 3, "threshold": 2, "extra": 1}, "unknown field"),
    ("mk.restore", {"tokens": "kms-a"}, "list of token labels"),
    ("mk.restore", {"make_current": "yes"}, "true or false"),
    ("mk.generate", {"custodians": 3}, "must be an object"),
    ("mk.rotate", {"custodians": {"shares": 3}}, "threshold"),
    ("mk.rotate", {"shares": 3, "threshold": 2}, "unknown field"),
])
def test_bad_ceremony_parameters_are_refused_when_submitted(deployment, operation, params,
                                                            message):
    requester, _ = master_key_quorum(deployment)
    with pytest.raises(InvalidRequest, match=message):
        deployment.access.approvals.submit(
            operation, params, deployment.access.users.get(requester).principal())


@pytest.mark.parametrize(("operation", "params"), [
    ("mk.backup", {"shares": 3, "threshold": 2}),
    ("mk.restore", {}),
    ("mk.generate", {"custodians": {"shares": 3, "threshold": 2}}),
])
def test_a_backend_without_shares_refuses_share_ceremonies_up_front(deployment, operation,
                                                                    params):
    requester, _ = master_key_quorum(deployment)
    with pytest.raises(InvalidRequest, match="HSM backend 'soft' cannot"):
        deployment.access.approvals.submit(
            operation, params, deployment.access.users.get(requester).principal())


def test_the_cli_refuses_a_ceremony_without_an_approved_request(tmp_path):
    from click.testing import CliRunner

    from kmsframe.cli import main
    from kmsframe.testing import embedded_deployment

    d = embedded_deployment(tmp_path)
    try:
        # An approved in-service rotation has no ticket: it already ran.
        done = approved_master_key_request(d, "mk.rotate")
        assert done.status == "executed" and done.result["rewrap"]["complete"] is True
        requester, _ = master_key_quorum(d)
        pending = d.access.approvals.submit(
            "mk.generate", {}, d.access.users.get(requester).principal())
    finally:
        d.close()

    def run(*args: str):
        return CliRunner().invoke(main, ["--data-dir", str(tmp_path), "hsm", *args])

    result = run("rotate")
    assert result.exit_code == 2 and "Missing option '--approval'" in result.output
    for request_id in (done.id, pending.id, "apr-unknown"):
        result = run("rotate", "--approval", request_id)
        assert result.exit_code == 1
        assert f"error: not_found: no approved ceremony {request_id!r}" in result.stderr
    d = embedded_deployment(tmp_path)
    try:
        log = d.access.audit
        log.flush()
        readable = next(s for s in log.sinks if isinstance(s, ReadableSink))
        refused = search(readable.read(), AuditQuery(action="mk.rotate", outcome="not_found"))
        assert {r["target"] for r in refused} == {done.id, pending.id, "apr-unknown"}
    finally:
        d.close()

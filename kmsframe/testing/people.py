"""Test helpers for access control: users with roles, fresh TOTP codes, approved requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..access.users import User
from ..approvals import ApprovalRequest
from ..deployment import Deployment

PASSWORD = "correct horse battery staple"


def make_user(deployment: Deployment, name: str, *roles: str,
              password: str = PASSWORD) -> User:
    """Create a user holding ``roles`` (bypassing approvals, as a bootstrap does)."""
    user, _uri = deployment.access.users.create(name, password, frozenset(roles))
    return user


def fresh_code(deployment: Deployment, name: str) -> str:
    """A TOTP code the user has not used yet and the server accepts now.

    Codes are single-use, so a second code within one 30-second step is the
    next step's code (accepted within the default window of one step).
    """
    users = deployment.access.users
    user = users.get(name)
    totp = users.totp_of(name)
    now = users.clock()
    # Never an earlier step than now: the check may happen after a step boundary.
    step = max(totp.step(now), user.totp_last_step + 1)
    if step > totp.step(now) + totp.params.window:
        raise AssertionError(f"user {name} has used every code in the window")
    return totp.code_at(step * totp.params.period)


def master_key_quorum(deployment: Deployment) -> tuple[str, list[str]]:
    """The default master-key quorum's people: (requester, approvers), made once.

    A security admin requests; three other security admins and an operator
    approve — the article's "3 admins + 1 operator".
    """
    users = deployment.access.users
    people = [("mk-requester", "security_admin"), ("mk-sa1", "security_admin"),
              ("mk-sa2", "security_admin"), ("mk-sa3", "security_admin"),
              ("mk-operator", "operator")]
    for name, role in people:
        if users.find(name) is None:
            make_user(deployment, name, role)
    return people[0][0], [name for name, _ in people[1:]]


def approved_master_key_request(deployment: Deployment, operation: str,
                                params: Mapping[str, Any] | None = None) -> ApprovalRequest:
    """Submit ``operation`` (``mk.*``) and approve it with the default quorum."""
    requester, approvers = master_key_quorum(deployment)
    approvals = deployment.access.approvals
    users = deployment.access.users
    request = approvals.submit(operation, dict(params or {}), users.get(requester).principal(),
                               reason="test ceremony")
    for name in approvers:
        request = approvals.approve(request.id, users.get(name).principal(),
                                    fresh_code(deployment, name))
    return request

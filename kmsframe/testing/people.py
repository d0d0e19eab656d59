"""Test helpers for access control: users with roles, and fresh TOTP codes."""

from __future__ import annotations

from ..access.users import User
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

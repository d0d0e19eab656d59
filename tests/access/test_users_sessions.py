"""Human users: login with password + TOTP, lockout, sessions, revocation."""

import json

import pytest

from kmsframe.access.sessions import token_id
from kmsframe.errors import AlreadyExists, InvalidRequest, Unauthenticated
from kmsframe.testing.people import PASSWORD, fresh_code, make_user


def login(d, name, password=PASSWORD, code=None):
    return d.access.login(name, password, code or fresh_code(d, name), source="127.0.0.1")


def test_login_with_password_and_totp_gives_a_session(deployment):
    make_user(deployment, "alice", "key_admin")
    token, session, user = login(deployment, "alice")
    principal = deployment.access.principal_for_session(token)
    assert principal.kind == "user" and principal.id == "alice"
    assert principal.roles == frozenset({"key_admin"})
    assert session.user == "alice"


def test_secrets_are_stored_only_hashed_or_wrapped(deployment):
    user, uri = deployment.access.users.create("bob", PASSWORD, frozenset())
    stored = json.dumps(deployment.storage.get("user", "bob").data)
    assert PASSWORD not in stored and "$argon2id$" in stored
    seed_b32 = uri.split("secret=")[1].split("&")[0]
    assert seed_b32 not in stored  # the TOTP seed is wrapped by the master key
    token, _, _ = login(deployment, "bob")
    assert deployment.storage.get("session", token_id(token)) is not None
    assert token not in json.dumps([d.data for d in deployment.storage.list("session")])


@pytest.mark.parametrize("what", ["password", "code", "user"])
def test_wrong_factor_fails_with_one_vague_error(deployment, what):
    make_user(deployment, "carol", "auditor")
    name = "nobody" if what == "user" else "carol"
    password = "wrong password here" if what == "password" else PASSWORD
    code = "000000" if what == "code" else fresh_code(deployment, "carol")
    with pytest.raises(Unauthenticated) as exc:
        deployment.access.login(name, password, code)
    assert exc.value.message == "wrong user name, password or code"


def test_a_totp_code_cannot_be_replayed(deployment):
    make_user(deployment, "dave", "auditor")
    code = fresh_code(deployment, "dave")
    login(deployment, "dave", code=code)
    with pytest.raises(Unauthenticated):
        login(deployment, "dave", code=code)


def test_repeated_failures_lock_the_user_out(deployment):
    make_user(deployment, "erin", "auditor")
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            deployment.access.login("erin", "wrong password here", "000000")
    # Even the right credentials fail while locked.
    with pytest.raises(Unauthenticated):
        login(deployment, "erin")
    assert deployment.access.users.get("erin").locked_until is not None


def test_disabled_user_cannot_log_in_and_loses_sessions(deployment):
    make_user(deployment, "frank", "key_admin")
    token, _, _ = login(deployment, "frank")
    deployment.access.users.disable("frank")
    with pytest.raises(Unauthenticated):
        deployment.access.principal_for_session(token)
    with pytest.raises(Unauthenticated):
        login(deployment, "frank")


def test_sessions_expire(deployment):
    make_user(deployment, "gina", "auditor")
    token, session, _ = login(deployment, "gina")
    sessions = deployment.access.sessions
    now = sessions.clock()
    sessions.clock = lambda: now + sessions.policy.idle_seconds + 1
    with pytest.raises(Unauthenticated):
        sessions.principal(token)


def test_logout_revokes_the_token(deployment):
    make_user(deployment, "hank", "auditor")
    token, _, _ = login(deployment, "hank")
    principal = deployment.access.principal_for_session(token)
    deployment.access.logout(token, principal)
    with pytest.raises(Unauthenticated):
        deployment.access.principal_for_session(token)


def test_role_change_applies_to_existing_sessions(deployment):
    make_user(deployment, "ivy", "key_admin", "auditor")
    token, _, _ = login(deployment, "ivy")
    deployment.access.users.revoke_role("ivy", "key_admin")
    assert deployment.access.principal_for_session(token).roles == frozenset({"auditor"})


@pytest.mark.parametrize("token", ["", "kms_s_nope", "Bearer x", None])
def test_unknown_tokens_are_refused(deployment, token):
    with pytest.raises(Unauthenticated):
        deployment.access.principal_for_session(token)


def test_user_validation(deployment):
    make_user(deployment, "jo", "auditor")
    with pytest.raises(AlreadyExists):
        make_user(deployment, "jo")
    with pytest.raises(InvalidRequest):
        make_user(deployment, "Bad Name")
    with pytest.raises(InvalidRequest):
        make_user(deployment, "kim", "app")  # apps are not users
    with pytest.raises(InvalidRequest):
        make_user(deployment, "lee", "root")


def test_logins_are_audited_without_secrets(deployment):
    make_user(deployment, "max", "auditor")
    login(deployment, "max")
    with pytest.raises(Unauthenticated):
        deployment.access.login("max", "wrong password here", "000000")
    records = list(deployment.access.audit.sinks[0].read())
    logins = [r for r in records if r.get("action") == "login"]
    assert [r["outcome"] for r in logins] == ["ok", "unauthenticated"]
    assert PASSWORD not in json.dumps(records) and "wrong password here" not in json.dumps(records)

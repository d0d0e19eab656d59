"""Key-to-app bindings: only bound apps, only allowed operations."""

import pytest

from kmsframe.authorization import Principal
from kmsframe.errors import InvalidRequest, NotFound, PermissionDenied
from kmsframe.testing import embedded_deployment

BILLING = Principal(id="billing", kind="app", roles=frozenset({"app"}))
OTHER = Principal(id="other", kind="app", roles=frozenset({"app"}))
HUMAN = Principal(id="billing", kind="user", roles=frozenset({"key_admin"}))


@pytest.fixture
def service(deployment):
    s = deployment.service
    s.create_key("cards")
    s.bind_app("cards", "billing", ["encrypt", "decrypt"])
    return s


def test_bound_app_may_use_allowed_operations(service):
    ct = service.encrypt("cards", b"4111", principal=BILLING)
    assert service.decrypt("cards", ct.ciphertext, principal=BILLING) == b"4111"


def test_unbound_app_is_denied_every_operation(service):
    ct = service.encrypt("cards", b"4111").ciphertext
    with pytest.raises(PermissionDenied):
        service.encrypt("cards", b"x", principal=OTHER)
    with pytest.raises(PermissionDenied):
        service.decrypt("cards", ct, principal=OTHER)
    with pytest.raises(PermissionDenied):
        service.rewrap("cards", ct, principal=OTHER)
    with pytest.raises(PermissionDenied):
        service.generate_data_key("cards", principal=OTHER)


@pytest.mark.parametrize("operation", ["rewrap", "datakey"])
def test_bound_app_is_denied_operations_it_was_not_given(service, operation):
    ct = service.encrypt("cards", b"4111").ciphertext
    call = {"rewrap": lambda: service.rewrap("cards", ct, principal=BILLING),
            "datakey": lambda: service.generate_data_key("cards", principal=BILLING)}[operation]
    with pytest.raises(PermissionDenied):
        call()
    service.bind_app("cards", "billing", ["encrypt", "decrypt", operation])
    call()


def test_decrypt_only_binding_cannot_encrypt(service):
    service.bind_app("cards", "billing", ["decrypt"])
    ct = service.encrypt("cards", b"4111").ciphertext
    assert service.decrypt("cards", ct, principal=BILLING) == b"4111"
    with pytest.raises(PermissionDenied):
        service.encrypt("cards", b"x", principal=BILLING)


def test_humans_cannot_use_app_bindings(service):
    # A user with the same id as a bound app is still not that app.
    with pytest.raises(PermissionDenied):
        service.encrypt("cards", b"x", principal=HUMAN)


def test_unbinding_takes_effect_at_once(service):
    service.encrypt("cards", b"warm the cache", principal=BILLING)
    service.unbind_app("cards", "billing")
    with pytest.raises(PermissionDenied):
        service.encrypt("cards", b"x", principal=BILLING)
    with pytest.raises(NotFound):
        service.unbind_app("cards", "billing")


def test_binding_change_is_seen_by_another_worker_at_once(tmp_path):
    a = embedded_deployment(tmp_path / "kms")
    b = embedded_deployment(tmp_path / "kms")  # a second process on the same store
    try:
        a.service.create_key("k")
        a.service.bind_app("k", "billing", ["encrypt"])
        b.service.encrypt("k", b"x", principal=BILLING)  # b caches the binding
        a.service.unbind_app("k", "billing")
        with pytest.raises(PermissionDenied):
            b.service.encrypt("k", b"x", principal=BILLING)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(("ops", "message"), [
    ([], "at least one"), (["sign"], "cannot sign"), (["launch"], "unknown operation"),
    ("encrypt", "list"),
])
def test_invalid_bindings_are_refused(service, ops, message):
    with pytest.raises(InvalidRequest, match=message):
        service.bind_app("cards", "payroll", ops)


@pytest.mark.parametrize("app_id", ["", "a b", "x" * 200, "ümlaut"])
def test_invalid_app_ids_are_refused(service, app_id):
    with pytest.raises(InvalidRequest):
        service.bind_app("cards", app_id, ["encrypt"])


def test_bindings_are_shown_and_stored_with_history(service, deployment):
    summary = service.get_key("cards").summary()
    assert summary["apps"] == {"billing": ["decrypt", "encrypt"]}
    key = deployment.service.keys.get("cards")
    assert key.history[-1].action == "binding.set"


def test_denials_through_access_control_are_audited(service, deployment):
    access = deployment.access
    with pytest.raises(PermissionDenied):
        access.crypto(OTHER, "encrypt", "cards",
                      lambda: service.encrypt("cards", b"secret-plaintext", principal=OTHER),
                      source="10.1.2.3")
    access.crypto(BILLING, "encrypt", "cards",
                  lambda: service.encrypt("cards", b"secret-plaintext", principal=BILLING))
    access.audit.flush()
    records = [r for r in access.audit.sinks[0].read() if r.get("action") == "encrypt"]
    denied, ok = records
    assert denied["outcome"] == "permission_denied" and denied["actor"] == "app:other"
    assert denied["source"] == "10.1.2.3" and "not bound" in denied["detail"]
    assert ok["outcome"] == "ok" and ok["version"] == 10001 and ok["key"] == "cards"
    assert "secret-plaintext" not in repr(records)


def test_fast_paths_still_check_the_binding(service):
    # Warm every fast path (encrypt_ready, cached openers) first.
    ct = service.encrypt("cards", b"4111", principal=BILLING).ciphertext
    for _ in range(3):
        service.encrypt("cards", b"4111")
        service.decrypt("cards", ct)
        service.decrypt("cards", ct, principal=BILLING)
    for intruder in (OTHER, HUMAN):
        with pytest.raises(PermissionDenied):
            service.encrypt("cards", b"x", principal=intruder)
        with pytest.raises(PermissionDenied):
            service.decrypt("cards", ct, principal=intruder)
    service.bind_app("cards", "billing", ["encrypt"])
    service.encrypt("cards", b"x", principal=BILLING)
    with pytest.raises(PermissionDenied):
        service.decrypt("cards", ct, principal=BILLING)

"""Roles and permissions on management calls, checked inside the core."""

import pytest

from kmsframe.access.roles import (
    HUMAN_ROLES,
    OPERATION_PERMISSIONS,
    PERMISSIONS,
    SENSITIVE_OPERATIONS,
    allowed,
)
from kmsframe.approvals import DEFAULT_RULES
from kmsframe.authorization import Principal
from kmsframe.errors import PermissionDenied


def user(*roles):
    return Principal(id="u", kind="user", roles=frozenset(roles))


APP = Principal(id="billing", kind="app", roles=frozenset({"app"}))


def test_every_permission_is_granted_to_known_roles_only():
    for permission, roles in PERMISSIONS.items():
        assert roles <= HUMAN_ROLES | {"app"}, permission
        assert roles, permission


def test_every_service_operation_maps_to_a_permission():
    for operation, permission in OPERATION_PERMISSIONS.items():
        assert permission in PERMISSIONS, operation


def test_every_sensitive_operation_has_a_default_quorum():
    assert SENSITIVE_OPERATIONS <= set(DEFAULT_RULES)


def test_master_key_operations_default_to_three_security_admins_and_an_operator():
    for op in ("mk.generate", "mk.rotate", "mk.backup", "mk.restore"):
        assert dict(DEFAULT_RULES[op].requirements) == {"security_admin": 3, "operator": 1}


@pytest.mark.parametrize(("principal", "permission", "expected"), [
    (user("auditor"), "audit.read", True),
    (user("auditor"), "keys.create", False),
    (user("key_admin"), "audit.read", False),
    (user("key_admin"), "keys.bind", True),
    (user("security_admin"), "mk.generate", True),
    (user("key_admin"), "mk.generate", False),
    (user("system_admin"), "users.manage", True),
    (user("operator"), "keys.create", False),
    (user(), "approvals.read", False),
    (APP, "crypto.encrypt", True),
    (APP, "keys.create", False),
    (user("key_admin"), "crypto.encrypt", False),
    (user("system_admin"), "no.such.permission", False),
])
def test_permission_table(principal, permission, expected):
    assert allowed(principal, permission) is expected


def test_key_admin_manages_keys_in_the_core(deployment):
    s = deployment.service
    s.create_key("k", actor=user("key_admin"))
    s.rotate("k", actor=user("key_admin"))
    s.bind_app("k", "billing", ["encrypt"], actor=user("key_admin"))


@pytest.mark.parametrize("principal", [user("auditor"), user("security_admin"), user(), APP])
def test_others_are_denied_key_management(deployment, principal):
    with pytest.raises(PermissionDenied):
        deployment.service.create_key("k", actor=principal)
    deployment.service.create_key("k2")
    with pytest.raises(PermissionDenied):
        deployment.service.bind_app("k2", "billing", ["encrypt"], actor=principal)
    with pytest.raises(PermissionDenied):
        deployment.service.disable("k2", actor=principal)


@pytest.mark.parametrize("call", [
    lambda s, a: s.rollback("k", actor=a),
    lambda s, a: s.schedule_deletion("k", actor=a),
    lambda s, a: s.set_min_decryption_version("k", 10002, actor=a),
    lambda s, a: s.set_version_state("k", 10001, "destroyed", actor=a),
])
def test_sensitive_operations_need_an_approved_request_even_for_key_admins(deployment, call):
    s = deployment.service
    s.create_key("k")
    s.rotate("k")
    with pytest.raises(PermissionDenied):
        call(s, user("key_admin"))

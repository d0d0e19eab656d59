"""Roles and the permission table: which role may do what.

The split follows the design article (访问控制): a system admin manages users,
roles and policies; a security admin runs master-key ceremonies; a key admin
manages working keys and their bindings to apps; an auditor only reads the
audit log; an app uses the keys bound to it. ``operator`` is the article's
fourth person in a master-key ceremony ("3 admins + 1 operator"): it holds no
standing permission and only counts as an approver.

Every management and crypto operation names one permission here; a caller
needs a role that grants it. Sensitive operations additionally run only
through an approved dual-control request (:mod:`kmsframe.approvals`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..authorization import Principal
from ..errors import InvalidRequest, PermissionDenied

SYSTEM_ADMIN = "system_admin"
SECURITY_ADMIN = "security_admin"
KEY_ADMIN = "key_admin"
AUDITOR = "auditor"
OPERATOR = "operator"
APP = "app"
# The deployment's root token (``KMSFRAME_ROOT_TOKEN``): a bootstrap and
# break-glass identity. It holds every permission except crypto (only bound
# apps use keys) and cannot run a sensitive operation itself: it may submit
# one, but approving needs people with a second factor.
ADMIN = "admin"

_APP_ROLES = frozenset({APP, AUDITOR})
HUMAN_ROLES = frozenset({SYSTEM_ADMIN, SECURITY_ADMIN, KEY_ADMIN, AUDITOR, OPERATOR})
ROLES = HUMAN_ROLES | {APP}

# Permission -> roles granting it.
PERMISSIONS: Mapping[str, frozenset[str]] = {
    # system admin: users, roles, policies, apps
    "users.read": frozenset({SYSTEM_ADMIN}),
    "users.manage": frozenset({SYSTEM_ADMIN}),
    "roles.grant": frozenset({SYSTEM_ADMIN}),
    "apps.create": frozenset({SYSTEM_ADMIN}),
    "apps.revoke": frozenset({SYSTEM_ADMIN}),
    "apps.read": frozenset({SYSTEM_ADMIN, KEY_ADMIN, AUDITOR}),
    "policies.manage": frozenset({SYSTEM_ADMIN}),
    # security admin: master-key ceremonies
    "mk.generate": frozenset({SECURITY_ADMIN}),
    "mk.rotate": frozenset({SECURITY_ADMIN}),
    "mk.backup": frozenset({SECURITY_ADMIN}),
    "mk.restore": frozenset({SECURITY_ADMIN}),
    "hsm.status": frozenset({SECURITY_ADMIN, SYSTEM_ADMIN}),
    # key admin: working keys and bindings
    "keys.read": frozenset({KEY_ADMIN, SECURITY_ADMIN, SYSTEM_ADMIN, AUDITOR}),
    "keys.create": frozenset({KEY_ADMIN}),
    "keys.rotate": frozenset({KEY_ADMIN}),
    "keys.rollback": frozenset({KEY_ADMIN}),
    "keys.versions": frozenset({KEY_ADMIN}),
    "keys.version_state": frozenset({KEY_ADMIN}),
    "keys.min_decryption_version": frozenset({KEY_ADMIN}),
    "keys.enable": frozenset({KEY_ADMIN}),
    "keys.disable": frozenset({KEY_ADMIN}),
    "keys.schedule_deletion": frozenset({KEY_ADMIN}),
    "keys.cancel_deletion": frozenset({KEY_ADMIN}),
    "keys.destroy_version": frozenset({KEY_ADMIN}),
    "keys.export": frozenset({KEY_ADMIN}),
    "keys.bind": frozenset({KEY_ADMIN}),
    "keys.conditions": frozenset({KEY_ADMIN}),
    # any signed-in caller: health, metrics, the API description, own session
    "health.read": HUMAN_ROLES | {APP},
    "metrics.read": frozenset({SYSTEM_ADMIN, SECURITY_ADMIN, AUDITOR}),
    "openapi.read": HUMAN_ROLES | {APP},
    "session.read": HUMAN_ROLES,
    # auditor
    "audit.read": frozenset({AUDITOR}),
    "audit.verify": frozenset({AUDITOR}),
    # approvals: any human admin may list; who may approve is the quorum's rule
    "approvals.read": HUMAN_ROLES,
    "approvals.act": HUMAN_ROLES,
    # apps: crypto with bound keys (the binding decides per key and operation)
    "crypto.encrypt": frozenset({APP}),
    "crypto.decrypt": frozenset({APP}),
    "crypto.rewrap": frozenset({APP}),
    "crypto.datakey": frozenset({APP}),
    "crypto.sign": frozenset({APP}),
    "crypto.verify": frozenset({APP}),
    "crypto.mac": frozenset({APP}),
    "crypto.public-key": frozenset({APP, KEY_ADMIN, SECURITY_ADMIN}),
}

# Operation names used by the key service (``_authorize``) -> permission.
OPERATION_PERMISSIONS: Mapping[str, str] = {
    "keys.create": "keys.create",
    "keys.rotate": "keys.rotate",
    "keys.rollback": "keys.rollback",
    "keys.min_decryption_version": "keys.min_decryption_version",
    "keys.enable": "keys.enable",
    "keys.disable": "keys.disable",
    "keys.schedule_deletion": "keys.schedule_deletion",
    "keys.cancel_deletion": "keys.cancel_deletion",
    "keys.bind": "keys.bind",
    "keys.conditions": "keys.conditions",
    "versions.pre_active": "keys.versions",
    "versions.active": "keys.versions",
    "versions.expired": "keys.versions",
    "versions.retired": "keys.versions",
    "versions.compromised": "keys.versions",
    "versions.destroyed": "keys.destroy_version",
}

# Operations that run only through an approved dual-control request.
SENSITIVE_OPERATIONS = frozenset({
    "mk.generate", "mk.rotate", "mk.backup", "mk.restore",
    "keys.export", "keys.schedule_deletion", "keys.rollback",
    "keys.min_decryption_version", "versions.destroyed", "roles.grant",
})


def permission_for(operation: str) -> str | None:
    """The permission a management operation needs, or None if unknown."""
    return OPERATION_PERMISSIONS.get(operation)


def allowed(principal: Principal, permission: str) -> bool:
    """Whether ``principal`` holds a role granting ``permission``."""
    if principal.kind == "system":
        return True
    roles = PERMISSIONS.get(permission)
    if roles is None:  # an unknown permission is granted to nobody
        return False
    held = principal.roles
    if principal.kind == "app":
        held = held & _APP_ROLES  # an app never holds an administrator's role
    elif ADMIN in held and not permission.startswith("crypto."):
        return True
    return not roles.isdisjoint(held)


def permissions_of(principal: Principal) -> frozenset[str]:
    """Every permission ``principal`` holds (for transports' credentials)."""
    return frozenset(p for p in PERMISSIONS if allowed(principal, p))


def require(principal: Principal, permission: str) -> None:
    """Raise :class:`PermissionDenied` unless ``principal`` may ``permission``."""
    if not allowed(principal, permission):
        raise PermissionDenied(log_detail=f"{principal} lacks permission {permission}")


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    """Validate human role names (apps are not users)."""
    out = frozenset(roles)
    unknown = out - HUMAN_ROLES
    if unknown:
        raise InvalidRequest(
            f"unknown roles: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(HUMAN_ROLES))})")
    return out

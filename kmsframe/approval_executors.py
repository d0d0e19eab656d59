"""What the built-in sensitive operations do once their request is approved.

Each executor acts as the request's ``approval`` principal, so the key's
history and the audit log name the request that authorised the change.
``mk.generate`` and ``mk.rotate`` (a new master key made inside the HSM, then
every working-key version re-wrapped under it, online) are built in.
``mk.backup`` and ``mk.restore`` move custodian shares, which must never be
stored in a request, so they stay ceremonies with the custodians present
(``kmsframe hsm backup|restore``); an HSM plugin may register executors for
them through ``kms_register_approval_executors``, and until one does such a
request is refused when submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .access.roles import check_roles
from .ceremonies import rotate_master_key
from .approvals import ApprovalExecutor, ApprovalRequest, approval_principal
from .errors import InvalidRequest
from .export import export_version, recipient_key

if TYPE_CHECKING:
    from .deployment import Deployment


def _str(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"params.{name} must be a non-empty string")
    return value


def _int(params: Mapping[str, Any], name: str) -> int:
    value = params.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"params.{name} must be an integer")
    return value


def _key_exists(params: Mapping[str, Any], d: "Deployment") -> None:
    d.service.get_key(_str(params, "key"))


def _key_version(params: Mapping[str, Any], d: "Deployment") -> None:
    key = d.service.get_key(_str(params, "key"))
    if key.version(_int(params, "version")) is None:
        raise InvalidRequest(f"key {key.name!r} has no version {params['version']}")


def _reason(r: ApprovalRequest) -> str:
    return f"approved request {r.id}" + (f": {r.reason}" if r.reason else "")


def _rollback(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    key = d.service.rollback(r.params["key"], actor=approval_principal(r.id), reason=_reason(r))
    return {"key": key.name, "primary_version": key.primary_version}


def _min_version(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    key = d.service.set_min_decryption_version(r.params["key"], r.params["version"],
                                               actor=approval_principal(r.id), reason=_reason(r))
    return {"key": key.name, "min_decryption_version": key.min_decryption_version}


def _schedule_deletion(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    key = d.service.schedule_deletion(r.params["key"], waiting_days=r.params.get("waiting_days"),
                                      actor=approval_principal(r.id), reason=_reason(r))
    return {"key": key.name, "deletion_at": key.deletion_at}


def _validate_deletion(params: Mapping[str, Any], d: "Deployment") -> None:
    _key_exists(params, d)
    days = params.get("waiting_days")
    if days is not None and (not isinstance(days, (int, float)) or isinstance(days, bool)):
        raise InvalidRequest("params.waiting_days must be a number")


def _destroy_version(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    key = d.service.set_version_state(r.params["key"], r.params["version"], "destroyed",
                                      actor=approval_principal(r.id), reason=_reason(r))
    return {"key": key.name, "version": r.params["version"], "state": "destroyed"}


def _export(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    key = d.service.get_key(r.params["key"])
    version = r.params.get("version") or key.primary_version
    return export_version(d.hsm, key, version, r.params["recipient"], r.params["public_key_pem"])


def _validate_export(params: Mapping[str, Any], d: "Deployment") -> None:
    key = d.service.get_key(_str(params, "key"))
    if params.get("version") is not None and key.version(_int(params, "version")) is None:
        raise InvalidRequest(f"key {key.name!r} has no version {params['version']}")
    _str(params, "recipient")
    recipient_key(_str(params, "public_key_pem"))


def _grant(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    user = d.access.users.grant(r.params["user"], r.params["role"])
    return {"user": user.name, "roles": sorted(user.roles)}


def _validate_grant(params: Mapping[str, Any], d: "Deployment") -> None:
    d.access.users.get(_str(params, "user"))
    check_roles({_str(params, "role")})


def _mk_generate(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    return {"master_key_id": d.hsm.generate_master_key()}


def _mk_rotate(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    new, report = rotate_master_key(d.hsm, d.service.keys, actor=str(approval_principal(r.id)),
                                    on_changed=lambda name: d.service.signal.bump())
    return {"master_key_id": new.master_key_id, "rewrap": report.as_dict()}


BUILTIN_EXECUTORS: Mapping[str, ApprovalExecutor] = {
    "keys.rollback": ApprovalExecutor(_rollback, _key_exists),
    "keys.min_decryption_version": ApprovalExecutor(_min_version, _key_version),
    "keys.schedule_deletion": ApprovalExecutor(_schedule_deletion, _validate_deletion),
    "versions.destroyed": ApprovalExecutor(_destroy_version, _key_version),
    "keys.export": ApprovalExecutor(_export, _validate_export),
    "roles.grant": ApprovalExecutor(_grant, _validate_grant),
    "mk.generate": ApprovalExecutor(_mk_generate),
    "mk.rotate": ApprovalExecutor(_mk_rotate),
}

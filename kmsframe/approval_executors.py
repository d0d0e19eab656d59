"""What the built-in sensitive operations do once their request is approved.

Each executor acts as the request's ``approval`` principal, so the key's
history and the audit log name the request that authorised the change.
``mk.generate`` and ``mk.rotate`` (a new master key made inside the HSM, then
every working-key version re-wrapped under it, online) run in the service
when approved. The ceremonies that move custodian shares — generate or rotate
with ``{"custodians": {"shares": N, "threshold": M}}``, ``mk.backup``
(``{"shares": N, "threshold": M}``) and ``mk.restore`` (``{"tokens": [...],
"make_current": bool}``) — cannot: shares must never be stored in a request.
Their approval issues a single-use ceremony ticket
(:mod:`kmsframe.ceremony_tickets`) that ``kmsframe hsm … --approval ID``
spends on the ceremony host, with the custodians present.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .access.roles import check_roles
from .ceremonies import (
    ResharableMasterKeys,
    SharedMasterKeys,
    generate_master_key,
    rotate_master_key,
)
from .ceremony_tickets import CeremonyTickets
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


MAX_SHARES = 255


def share_counts(params: Mapping[str, Any], where: str = "params") -> tuple[int, int]:
    """``(shares, threshold)`` of a custodian split, checked: 2 <= M <= N <= 255."""
    count, threshold = params.get("shares"), params.get("threshold")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (count, threshold)) \
            or not 2 <= threshold <= count <= MAX_SHARES:  # type: ignore[operator]
        raise InvalidRequest(f"{where}.shares and {where}.threshold need "
                             f"2 <= threshold <= shares <= {MAX_SHARES}")
    return count, threshold  # type: ignore[return-value]


def custodians(params: Mapping[str, Any]) -> tuple[int, int] | None:
    """The custodian split a generate/rotate request asks for, if any."""
    spec = params.get("custodians")
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise InvalidRequest("params.custodians must be an object")
    _only(spec, {"shares", "threshold"}, "params.custodians")
    return share_counts(spec, "params.custodians")


def _only(params: Mapping[str, Any], allowed: set[str], where: str = "params") -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidRequest(f"{where} has unknown field(s): {', '.join(unknown)}")


def _can(d: "Deployment", protocol: type, what: str) -> None:
    if not isinstance(d.hsm, protocol):
        raise InvalidRequest(f"HSM backend {d.hsm.id!r} cannot {what}")


def _validate_new_master_key(params: Mapping[str, Any], d: "Deployment") -> None:
    _only(params, {"custodians"})
    if custodians(params) is not None:
        _can(d, SharedMasterKeys, "make a master key from shares")


def _validate_backup(params: Mapping[str, Any], d: "Deployment") -> None:
    _only(params, {"shares", "threshold"})
    share_counts(params)
    _can(d, ResharableMasterKeys, "back up a master key as shares")


def _validate_restore(params: Mapping[str, Any], d: "Deployment") -> None:
    _only(params, {"tokens", "make_current"})
    tokens = params.get("tokens", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
        raise InvalidRequest("params.tokens must be a list of token labels")
    if not isinstance(params.get("make_current", False), bool):
        raise InvalidRequest("params.make_current must be true or false")
    _can(d, SharedMasterKeys, "restore a master key from shares")


def _ticket(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    """Authorise the ceremony host to run ``r`` once, with the custodians present."""
    rule = d.access.approvals.rules[r.operation]
    ticket = CeremonyTickets(d.storage, d.access.approvals.clock).issue(
        r.id, r.operation, r.params, rule.ttl_seconds)
    verb = r.operation.split(".", 1)[1]
    return {"ceremony": f"kmsframe hsm {verb} --approval {r.id}",
            "ceremony_expires_at": ticket.expires_at}


def _mk_generate(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    if custodians(r.params) is not None:
        return _ticket(r, d)
    return {"master_key_id": generate_master_key(d.hsm).master_key_id}


def _mk_rotate(r: ApprovalRequest, d: "Deployment") -> Mapping[str, Any]:
    if custodians(r.params) is not None:
        return _ticket(r, d)
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
    "mk.generate": ApprovalExecutor(_mk_generate, _validate_new_master_key),
    "mk.rotate": ApprovalExecutor(_mk_rotate, _validate_new_master_key),
    "mk.backup": ApprovalExecutor(_ticket, _validate_backup),
    "mk.restore": ApprovalExecutor(_ticket, _validate_restore),
}

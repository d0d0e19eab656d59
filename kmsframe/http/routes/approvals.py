"""Dual control over HTTP, and the audit log's read side.

A sensitive call answers ``202 Accepted`` with the pending request
(:mod:`kmsframe.approvals`); approvers list them with ``GET /v1/approvals``
and act with ``POST /v1/approvals/{id}/approve`` (or ``/reject``), each
sending a fresh TOTP code. The approval that completes the quorum runs the
operation and gets the finished request back (``status`` ``executed`` or
``failed``); an export's wrapped key is in its ``result``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...audit.search import AuditQuery, search
from ...audit.sinks import ReadableSink
from ...audit.verify import verify_sinks
from ...errors import Unavailable
from ..access import principal_of, source_of
from ..body import check_fields, integer, json_object, read_json, string
from ..errors import ValidationFailed
from ..responses import json_response
from ..routing import KmsRoute
from ..runtime import Runtime

_STATUSES = frozenset({"pending", "executing", "executed", "failed", "rejected", "expired"})


async def _object(request: Request, runtime: Runtime, allowed: frozenset[str]) -> dict[str, Any]:
    obj = json_object(await read_json(request.scope, request.receive,
                                      runtime.settings.max_body_bytes, empty={}))
    check_fields(obj, allowed)
    return obj


async def submit(runtime: Runtime, request: Request, operation: str,
                 params: dict[str, Any], reason: str = "") -> Response:
    """Create the pending request for a sensitive call: 202 and its summary."""
    pending = await run_in_threadpool(partial(
        runtime.deployment.access.approvals.submit, operation, params,
        principal_of(request.scope), reason=reason, source=source_of(request.scope)))
    return json_response(pending.summary(), status=202)


async def list_approvals(runtime: Runtime, request: Request) -> Response:
    status = request.query_params.get("status")
    if status is not None and status not in _STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(sorted(_STATUSES))}")
    found = await run_in_threadpool(runtime.deployment.access.approvals.list, status)
    return json_response({"approvals": [r.summary() for r in found]})


async def get_approval(runtime: Runtime, request: Request) -> Response:
    found = await run_in_threadpool(runtime.deployment.access.approvals.get,
                                    request.path_params["request_id"])
    return json_response(found.summary())


async def approve(runtime: Runtime, request: Request) -> Response:
    obj = await _object(request, runtime, frozenset({"totp"}))
    code = string(obj, "totp", max_length=16)
    done = await run_in_threadpool(partial(
        runtime.deployment.access.approvals.approve, request.path_params["request_id"],
        principal_of(request.scope), code, source=source_of(request.scope)))
    return json_response(done.summary())


async def reject(runtime: Runtime, request: Request) -> Response:
    obj = await _object(request, runtime, frozenset({"totp", "reason"}))
    code = string(obj, "totp", max_length=16)
    reason = string(obj, "reason", required=False, default="", max_length=1024)
    done = await run_in_threadpool(partial(
        runtime.deployment.access.approvals.reject, request.path_params["request_id"],
        principal_of(request.scope), code, reason=reason, source=source_of(request.scope)))
    return json_response(done.summary())


async def export_key(runtime: Runtime, request: Request) -> Response:
    obj = await _object(request, runtime,
                        frozenset({"recipient", "public_key_pem", "version", "reason"}))
    params: dict[str, Any] = {
        "key": request.path_params["name"],
        "recipient": string(obj, "recipient", max_length=128),
        "public_key_pem": string(obj, "public_key_pem", max_length=16384),
    }
    version = integer(obj, "version", required=False, minimum=10001, maximum=99999)
    if version is not None:
        params["version"] = version
    reason = string(obj, "reason", required=False, default="", max_length=1024)
    return await submit(runtime, request, "keys.export", params, reason)


# What each master-key request may carry besides its reason; the executors
# (kmsframe.approval_executors) check the values when the request is submitted.
MASTER_KEY_PARAMS: dict[str, tuple[frozenset[str], str]] = {
    "generate": (frozenset({"custodians"}), "NewMasterKeyRequest?"),
    "rotate": (frozenset({"custodians"}), "NewMasterKeyRequest?"),
    "backup": (frozenset({"shares", "threshold"}), "BackupRequest"),
    "restore": (frozenset({"tokens", "make_current"}), "RestoreRequest?"),
}


def master_key_endpoint(runtime: Runtime, verb: str) -> Any:
    fields = MASTER_KEY_PARAMS[verb][0]

    async def endpoint(request: Request) -> Response:
        obj = await _object(request, runtime, fields | {"reason"})
        reason = string(obj, "reason", required=False, default="", max_length=1024)
        params = {name: obj[name] for name in fields if obj.get(name) is not None}
        return await submit(runtime, request, f"mk.{verb}", params, reason)

    return endpoint


def _time(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be UNIX seconds") from None


async def read_audit(runtime: Runtime, request: Request) -> Response:
    q = request.query_params
    unknown = set(q) - {"key", "app", "user", "action", "outcome", "request_id", "since",
                        "until", "limit"}
    if unknown:
        raise ValidationFailed(f"unknown query parameters: {', '.join(sorted(unknown))}")
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise ValidationFailed("limit must be an integer") from None
    query = AuditQuery(key=q.get("key"), app=q.get("app"), user=q.get("user"),
                       action=q.get("action"), outcome=q.get("outcome"),
                       request_id=q.get("request_id"),
                       since=_time(request, "since"), until=_time(request, "until"), limit=limit)
    log = runtime.deployment.access.audit
    readable = [s for s in log.sinks if isinstance(s, ReadableSink)]
    if not readable:
        raise Unavailable("no audit sink of this deployment can be read back")

    def run() -> list[Any]:
        log.flush()
        return search(readable[0].read(), query)

    return json_response({"records": await run_in_threadpool(run)})


async def verify_audit(runtime: Runtime, request: Request) -> Response:
    log = runtime.deployment.access.audit

    def run() -> dict[str, Any]:
        log.flush()
        ok, reports, cross = verify_sinks(log.sinks, runtime.deployment.storage, log.sealing)
        return {"ok": ok, "sinks": {name: r.summary() for name, r in reports.items()},
                "cross_sink": cross}

    return json_response(await run_in_threadpool(run))


def routes(runtime: Runtime) -> list[KmsRoute]:
    def r(path: str, endpoint: Any, method: str, permission: str, name: str,
          doc: dict[str, Any]) -> KmsRoute:
        return KmsRoute(path, endpoint, method=method, permission=permission, name=name, doc=doc)

    table = [
        r("/v1/approvals", partial(list_approvals, runtime), "GET", "approvals.read",
          "approvals.list", {"summary": "List dual-control requests (?status=pending)",
                             "response": "ApprovalList"}),
        r("/v1/approvals/{request_id}", partial(get_approval, runtime), "GET", "approvals.read",
          "approvals.get", {"summary": "Show a dual-control request", "response": "Approval"}),
        r("/v1/approvals/{request_id}/approve", partial(approve, runtime), "POST",
          "approvals.act", "approvals.approve",
          {"summary": "Approve with a fresh TOTP code; the last approval runs the operation",
           "request": "ApproveRequest", "response": "Approval"}),
        r("/v1/approvals/{request_id}/reject", partial(reject, runtime), "POST",
          "approvals.act", "approvals.reject",
          {"summary": "Reject (or, as the requester, withdraw) a pending request",
           "request": "RejectRequest", "response": "Approval"}),
        r("/v1/keys/{name}/export", partial(export_key, runtime), "POST", "keys.export",
          "keys.export",
          {"summary": "Request an export wrapped to a recipient's RSA key (202: pending)",
           "request": "ExportRequest", "response": "Approval", "status": 202}),
        r("/v1/audit", partial(read_audit, runtime), "GET", "audit.read", "audit.search",
          {"summary": "Search the audit log by key, app, user, action, outcome, request_id and time",
           "response": "AuditRecords"}),
        r("/v1/audit/verify", partial(verify_audit, runtime), "GET", "audit.verify",
          "audit.verify", {"summary": "Verify the audit log's chain, seals and anchors",
                           "response": "AuditVerification"}),
    ]
    for verb, (_, schema) in MASTER_KEY_PARAMS.items():
        table.append(r(f"/v1/master-keys/{verb}", master_key_endpoint(runtime, verb), "POST",
                       f"mk.{verb}", f"mk.{verb}",
                       {"summary": f"Request a master-key {verb} ceremony (202: pending; "
                                   f"3 security admins + 1 operator by default)",
                        "request": schema, "response": "Approval", "status": 202}))
    return table

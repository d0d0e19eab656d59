"""Key management routes: create, list, show, rotate, state changes.

Each call reads and writes the store (and may call the HSM), so it runs in
the thread pool, off the event loop. Responses are the key's summary, which
holds no key material.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...authorization import Principal
from ...model import Key, RotationPolicy
from ...service import KeyService
from ..body import (
    check_fields,
    integer,
    json_object,
    number,
    read_json,
    string,
    string_map,
)
from ..errors import ValidationFailed
from ..responses import json_response
from ..routing import KmsRoute
from ..runtime import Runtime

_CREATE = frozenset({"name", "algorithm", "purpose", "rotation_policy", "description", "labels"})
_REASON = frozenset({"reason"})
_DELETION = frozenset({"reason", "waiting_days"})
_STATE = frozenset({"reason", "state"})
_MIN_VERSION = frozenset({"reason", "version"})


async def _body(request: Request, runtime: Runtime, allowed: frozenset[str]) -> dict[str, Any]:
    """The JSON object body (an empty body is ``{}``), with only known fields."""
    obj = json_object(await read_json(request.scope, request.receive,
                                      runtime.settings.max_body_bytes, empty={}))
    check_fields(obj, allowed)
    return obj


def _principal(request: Request) -> Principal:
    return request.user.principal


def _policy(obj: dict[str, Any]) -> RotationPolicy | None:
    raw = obj.get("rotation_policy")
    if raw is None:
        return None
    raw = json_object(raw, "'rotation_policy'")
    check_fields(raw, frozenset({"period_seconds", "notice_seconds"}), "'rotation_policy'")
    period = integer(raw, "period_seconds", minimum=60, maximum=100 * 366 * 86400)
    notice = integer(raw, "notice_seconds", required=False, default=0, minimum=0,
                     maximum=100 * 366 * 86400)
    try:
        return RotationPolicy(period, notice)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None


async def create_key(runtime: Runtime, request: Request) -> Response:
    obj = await _body(request, runtime, _CREATE)
    name = string(obj, "name", max_length=128)
    algorithm = string(obj, "algorithm", required=False, default="aes-256-gcm", max_length=64)
    purpose = string(obj, "purpose", required=False, max_length=32)
    description = string(obj, "description", required=False, default="", max_length=1024)
    labels = string_map(obj, "labels")
    policy = _policy(obj)
    key = await run_in_threadpool(partial(
        runtime.service.create_key, name, algorithm=algorithm, purpose=purpose,
        rotation_policy=policy, description=description, labels=labels,
        actor=_principal(request)))
    return json_response(key.summary(), status=201)


async def list_keys(runtime: Runtime, request: Request) -> Response:
    keys = await run_in_threadpool(runtime.service.list_keys)
    return json_response({"keys": [k.summary() for k in keys]})


async def get_key(runtime: Runtime, request: Request) -> Response:
    key = await run_in_threadpool(runtime.service.get_key, request.path_params["name"])
    return json_response(key.summary())


Change = Callable[[KeyService, str, dict[str, Any], Principal], Key]


def _change(runtime: Runtime, allowed: frozenset[str], change: Change) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        obj = await _body(request, runtime, allowed)
        string(obj, "reason", required=False, max_length=1024)
        key = await run_in_threadpool(change, runtime.service, request.path_params["name"], obj,
                                      _principal(request))
        return json_response(key.summary())

    return endpoint


def routes(runtime: Runtime) -> list[KmsRoute]:
    def simple(verb: str, method: str, summary: str) -> KmsRoute:
        def change(s: KeyService, name: str, obj: dict[str, Any], actor: Principal) -> Key:
            return getattr(s, method)(name, actor=actor, reason=obj.get("reason"))

        return KmsRoute(f"/v1/keys/{{name}}/{verb}", _change(runtime, _REASON, change),
                        method="POST", permission=f"keys.{method}", name=f"keys.{method}",
                        doc={"summary": summary, "request": "ReasonRequest?",
                             "response": "Key"})

    def schedule(s: KeyService, name: str, obj: dict[str, Any], actor: Principal) -> Key:
        days = number(obj, "waiting_days", required=False, maximum=3650.0)
        return s.schedule_deletion(name, waiting_days=days, actor=actor, reason=obj.get("reason"))


    def min_version(s: KeyService, name: str, obj: dict[str, Any], actor: Principal) -> Key:
        version = integer(obj, "version", minimum=10001, maximum=99999)
        return s.set_min_decryption_version(name, version, actor=actor, reason=obj.get("reason"))

    async def version_state(request: Request) -> Response:
        # The version comes from the path; the body names the new state.
        obj = await _body(request, runtime, _STATE)
        state = string(obj, "state", max_length=32)
        reason = string(obj, "reason", required=False, max_length=1024)
        key = await run_in_threadpool(partial(
            runtime.service.set_version_state, request.path_params["name"],
            request.path_params["version"], state, actor=_principal(request), reason=reason))
        return json_response(key.summary())

    return [
        KmsRoute("/v1/keys", partial(create_key, runtime), method="POST",
                 permission="keys.create", name="keys.create",
                 doc={"summary": "Create a working key (first version 10001)",
                      "request": "CreateKeyRequest", "response": "Key", "status": 201}),
        KmsRoute("/v1/keys", partial(list_keys, runtime), method="GET",
                 permission="keys.read", name="keys.list",
                 doc={"summary": "List keys", "response": "KeyList"}),
        KmsRoute("/v1/keys/{name}", partial(get_key, runtime), method="GET",
                 permission="keys.read", name="keys.get",
                 doc={"summary": "Show a key and its versions", "response": "Key"}),
        simple("rotate", "rotate", "Make a new primary version"),
        simple("rollback", "rollback", "Emergency rollback to the previous stable version"),
        simple("disable", "disable", "Disable the key (no crypto until enabled)"),
        simple("enable", "enable", "Enable a disabled key"),
        KmsRoute("/v1/keys/{name}/schedule-deletion",
                 _change(runtime, _DELETION, schedule), method="POST",
                 permission="keys.schedule_deletion", name="keys.schedule_deletion",
                 doc={"summary": "Schedule the key's destruction after a waiting period",
                      "request": "ScheduleDeletionRequest?", "response": "Key"}),
        simple("cancel-deletion", "cancel_deletion",
               "Cancel a scheduled deletion (the key comes back disabled)"),
        KmsRoute("/v1/keys/{name}/versions/{version:int}/state", version_state, method="POST",
                 permission="keys.version_state", name="keys.version_state",
                 doc={"summary": "Move a version to expired, retired, compromised or destroyed",
                      "request": "VersionStateRequest", "response": "Key"}),
        KmsRoute("/v1/keys/{name}/min-decryption-version",
                 _change(runtime, _MIN_VERSION, min_version), method="POST",
                 permission="keys.min_decryption_version", name="keys.min_decryption_version",
                 doc={"summary": "Refuse to decrypt below this version",
                      "request": "MinDecryptionVersionRequest", "response": "Key"}),
    ]

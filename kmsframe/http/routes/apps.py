"""App routes: register an app (its token is shown once), list, show, revoke."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..body import check_fields, json_object, read_json, string
from ..errors import ValidationFailed
from ..responses import json_response
from ..routing import KmsRoute
from ..runtime import Runtime

_CREATE = frozenset({"name", "roles", "client_cert_sha256"})


def _roles(obj: dict[str, Any]) -> tuple[str, ...]:
    roles = obj.get("roles", ["app"])
    if type(roles) is not list or not roles or not all(type(r) is str for r in roles):
        raise ValidationFailed("'roles' must be a non-empty list of strings")
    return tuple(roles)


async def create_app(runtime: Runtime, request: Request) -> Response:
    obj = json_object(await read_json(request.scope, request.receive,
                                      runtime.settings.max_body_bytes))
    check_fields(obj, _CREATE)
    name = string(obj, "name", max_length=128)
    fingerprint = string(obj, "client_cert_sha256", required=False, max_length=64)
    app, token = await run_in_threadpool(partial(
        runtime.apps.create, name, roles=_roles(obj), client_cert_sha256=fingerprint,
        actor=request.user.principal))
    # The only time the token is ever shown.
    return json_response({**app.summary(), "token": token.reveal_text()}, status=201)


async def list_apps(runtime: Runtime, request: Request) -> Response:
    apps = await run_in_threadpool(runtime.apps.list)
    return json_response({"apps": [a.summary() for a in apps]})


async def get_app(runtime: Runtime, request: Request) -> Response:
    app = await run_in_threadpool(runtime.apps.get, request.path_params["app_id"])
    return json_response(app.summary())


async def revoke_app(runtime: Runtime, request: Request) -> Response:
    app = await run_in_threadpool(partial(runtime.apps.revoke, request.path_params["app_id"],
                                          actor=request.user.principal))
    return json_response(app.summary())


def routes(runtime: Runtime) -> list[KmsRoute]:
    return [
        KmsRoute("/v1/apps", partial(create_app, runtime), method="POST",
                 permission="apps.create", name="apps.create",
                 doc={"summary": "Register an app; its bearer token is in this response only",
                      "request": "CreateAppRequest", "response": "CreatedApp", "status": 201}),
        KmsRoute("/v1/apps", partial(list_apps, runtime), method="GET",
                 permission="apps.read", name="apps.list",
                 doc={"summary": "List apps (never their tokens)", "response": "AppList"}),
        KmsRoute("/v1/apps/{app_id}", partial(get_app, runtime), method="GET",
                 permission="apps.read", name="apps.get",
                 doc={"summary": "Show an app", "response": "App"}),
        KmsRoute("/v1/apps/{app_id}/revoke", partial(revoke_app, runtime), method="POST",
                 permission="apps.revoke", name="apps.revoke",
                 doc={"summary": "Revoke an app's token in every worker", "response": "App"}),
    ]

"""Human access routes: login and logout, users and roles, key-to-app bindings.

Role *grants* are sensitive: ``POST /v1/users/{user}/roles`` answers 202 with
a pending dual-control request. Removing a role or disabling a user lowers
privilege and happens at once (disabling also ends the user's sessions).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...access.users import new_password
from ..access import principal_of, source_of
from ..body import check_fields, json_object, read_json, string
from ..errors import ValidationFailed
from ..responses import json_response
from ..routing import KmsRoute
from ..runtime import Runtime


async def _object(request: Request, runtime: Runtime, allowed: frozenset[str],
                  empty: Any = None) -> dict[str, Any]:
    obj = json_object(await read_json(request.scope, request.receive,
                                      runtime.settings.max_body_bytes, empty=empty))
    check_fields(obj, allowed)
    return obj


def _roles(obj: dict[str, Any], field: str = "roles") -> frozenset[str]:
    roles = obj.get(field, [])
    if type(roles) is not list or not all(type(r) is str for r in roles):
        raise ValidationFailed(f"'{field}' must be a list of role names")
    return frozenset(roles)


# -- sessions -------------------------------------------------------------------------

async def login(runtime: Runtime, request: Request) -> Response:
    obj = await _object(request, runtime, frozenset({"user", "password", "totp"}))
    user = string(obj, "user", max_length=64)
    password = string(obj, "password", max_length=1024)
    code = string(obj, "totp", max_length=16)
    token, session, found = await run_in_threadpool(partial(
        runtime.deployment.access.login, user, password, code, source=source_of(request.scope)))
    # The only time the session token is shown.
    return json_response({"token": token, "user": found.name, "roles": sorted(found.roles),
                          "expires_at": session.expires_at}, status=201)


async def logout(runtime: Runtime, request: Request) -> Response:
    header = request.headers.get("authorization", "")
    token = header.partition(" ")[2].strip()
    await run_in_threadpool(partial(runtime.deployment.access.logout, token,
                                    principal_of(request.scope),
                                    source=source_of(request.scope)))
    return json_response({"status": "logged out"})


async def whoami(runtime: Runtime, request: Request) -> Response:
    principal = principal_of(request.scope)
    return json_response({"id": principal.id, "kind": principal.kind,
                          "roles": sorted(principal.roles)})


# -- users ------------------------------------------------------------------------------

async def create_user(runtime: Runtime, request: Request) -> Response:
    """A new user without roles (roles come by approved grants); shown once:
    the initial password and the TOTP enrolment URI."""
    obj = await _object(request, runtime, frozenset({"name"}))
    name = string(obj, "name", max_length=64)
    password = new_password()
    user, uri = await run_in_threadpool(runtime.deployment.access.users.create, name, password)
    return json_response({**user.summary(), "initial_password": password, "totp_uri": uri},
                         status=201)


async def list_users(runtime: Runtime, request: Request) -> Response:
    users = await run_in_threadpool(runtime.deployment.access.users.list)
    return json_response({"users": [u.summary() for u in users]})


async def get_user(runtime: Runtime, request: Request) -> Response:
    user = await run_in_threadpool(runtime.deployment.access.users.get,
                                   request.path_params["user"])
    return json_response(user.summary())


async def grant_role(runtime: Runtime, request: Request) -> Response:
    obj = await _object(request, runtime, frozenset({"role", "reason"}))
    role = string(obj, "role", max_length=32)
    reason = string(obj, "reason", required=False, default="", max_length=1024)
    pending = await run_in_threadpool(partial(
        runtime.deployment.access.approvals.submit, "roles.grant",
        {"user": request.path_params["user"], "role": role}, principal_of(request.scope),
        reason=reason, source=source_of(request.scope)))
    return json_response(pending.summary(), status=202)


async def revoke_role(runtime: Runtime, request: Request) -> Response:
    user = await run_in_threadpool(runtime.deployment.access.users.revoke_role,
                                   request.path_params["user"], request.path_params["role"])
    return json_response(user.summary())


async def disable_user(runtime: Runtime, request: Request) -> Response:
    access = runtime.deployment.access
    name = request.path_params["user"]
    user = await run_in_threadpool(access.users.disable, name)
    await run_in_threadpool(access.sessions.revoke_user, name)
    return json_response(user.summary())


async def enable_user(runtime: Runtime, request: Request) -> Response:
    user = await run_in_threadpool(runtime.deployment.access.users.enable,
                                   request.path_params["user"])
    return json_response(user.summary())


# -- bindings -----------------------------------------------------------------------------

async def put_binding(runtime: Runtime, request: Request) -> Response:
    obj = await _object(request, runtime, frozenset({"operations"}))
    operations = obj.get("operations")
    if type(operations) is not list or not all(type(o) is str for o in operations):
        raise ValidationFailed("'operations' must be a list of operation names")
    key = await run_in_threadpool(partial(
        runtime.service.bind_app, request.path_params["name"], request.path_params["app_id"],
        operations, actor=principal_of(request.scope)))
    return json_response(key.summary())


async def delete_binding(runtime: Runtime, request: Request) -> Response:
    key = await run_in_threadpool(partial(
        runtime.service.unbind_app, request.path_params["name"], request.path_params["app_id"],
        actor=principal_of(request.scope)))
    return json_response(key.summary())


async def put_conditions(runtime: Runtime, request: Request) -> Response:
    obj = await _object(request, runtime, frozenset({"conditions"}))
    conditions = json_object(obj.get("conditions"), "'conditions'")
    key = await run_in_threadpool(partial(
        runtime.service.set_conditions, request.path_params["name"], conditions,
        actor=principal_of(request.scope)))
    return json_response(key.summary())


def routes(runtime: Runtime) -> list[KmsRoute]:
    def r(path: str, endpoint: Any, method: str, permission: str | None, name: str,
          doc: dict[str, Any]) -> KmsRoute:
        return KmsRoute(path, partial(endpoint, runtime), method=method, permission=permission,
                        name=name, doc=doc)

    return [
        r("/v1/login", login, "POST", None, "login",
          {"summary": "Log in with password and TOTP code; returns a session token (once)",
           "request": "LoginRequest", "response": "Session", "status": 201}),
        r("/v1/logout", logout, "POST", "session.read", "logout",
          {"summary": "End this session", "response": "Health"}),
        r("/v1/whoami", whoami, "GET", "session.read", "whoami",
          {"summary": "The caller's identity and roles", "response": "Identity"}),
        r("/v1/users", create_user, "POST", "users.manage", "users.create",
          {"summary": "Create a user without roles; initial password and TOTP URI shown once",
           "request": "CreateUserRequest", "response": "CreatedUser", "status": 201}),
        r("/v1/users", list_users, "GET", "users.read", "users.list",
          {"summary": "List users and their roles", "response": "UserList"}),
        r("/v1/users/{user}", get_user, "GET", "users.read", "users.get",
          {"summary": "Show a user", "response": "User"}),
        r("/v1/users/{user}/roles", grant_role, "POST", "roles.grant", "users.grant_role",
          {"summary": "Request a role grant (202: a pending dual-control request)",
           "request": "GrantRoleRequest", "response": "Approval", "status": 202}),
        r("/v1/users/{user}/roles/{role}", revoke_role, "DELETE", "users.manage",
          "users.revoke_role", {"summary": "Remove a role from a user", "response": "User"}),
        r("/v1/users/{user}/disable", disable_user, "POST", "users.manage", "users.disable",
          {"summary": "Disable a user and end their sessions", "response": "User"}),
        r("/v1/users/{user}/enable", enable_user, "POST", "users.manage", "users.enable",
          {"summary": "Enable a user (and clear a lockout)", "response": "User"}),
        r("/v1/keys/{name}/apps/{app_id}", put_binding, "PUT", "keys.bind", "keys.bind",
          {"summary": "Allow an app these operations on the key (replaces its binding)",
           "request": "BindingRequest", "response": "Key"}),
        r("/v1/keys/{name}/apps/{app_id}", delete_binding, "DELETE", "keys.bind", "keys.unbind",
          {"summary": "Remove an app's binding to the key", "response": "Key"}),
        r("/v1/keys/{name}/conditions", put_conditions, "PUT", "keys.conditions",
          "keys.conditions",
          {"summary": "Set the key's conditions: source_ranges, time_window, rate_limit",
           "request": "ConditionsRequest", "response": "Key"}),
    ]

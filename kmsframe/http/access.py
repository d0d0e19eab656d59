"""Access control at the HTTP boundary: who the caller is, what each route
needs, and the audit record of every call.

* :class:`SessionBearerBackend` — besides app tokens and the root token, a
  bearer token may be a human session (``kms_s_...``, from ``POST
  /v1/login``). Sessions are checked against the store on every request (no
  cache), so a logout, a disabled user or a removed role applies at once.
* :func:`audited_guard` — the route guard: requires the route's permission
  (the role table of :mod:`kmsframe.access.roles`) and audits every refusal.
* :func:`audit_management` — wraps a management route's endpoint so its
  outcome is written to the audit log, durably, *before* the response is
  sent; a failure is recorded with its error code (and, for operators, its
  log detail). A route that changes something first writes a durable
  write-ahead record (outcome ``started``): if that cannot be written the
  route does not run (503), so no change is ever stored without a record,
  even when the outcome record then fails. The records of one call — started,
  the key changes it stored, the outcome — share a ``request_id``. Crypto
  routes audit per item instead (batched, see :mod:`kmsframe.http.routes.crypto`).
"""

from __future__ import annotations

import functools
import inspect
import secrets
from collections.abc import Callable
from time import time
from typing import Any

from starlette.authentication import AuthenticationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import Scope

from ..access.roles import permissions_of
from ..access.sessions import TOKEN_PREFIX as SESSION_PREFIX
from ..audit.records import STARTED, AuditEvent, current_request_id
from ..authorization import Principal, request_source
from ..errors import KmsError, PermissionDenied, Unauthenticated
from .auth import BearerBackend, Credentials
from .routing import KmsRoute, require_permission
from .runtime import Runtime

# The only routes open without a token: the liveness probe and the login.
PUBLIC_PATHS = frozenset({"/healthz", "/v1/login"})


def source_of(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _actor(scope: Scope) -> str:
    user = scope.get("user")
    principal = getattr(user, "principal", None)
    return str(principal) if principal is not None else "anonymous"


class SessionBearerBackend(BearerBackend):
    """App and root tokens as before; ``kms_s_`` tokens are human sessions."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(lambda: runtime.apps, permissions_of)
        self.runtime = runtime

    async def authenticate(self, conn: HTTPConnection) -> tuple[Credentials, Any] | None:
        text = self.token(conn.scope)
        if text is not None and text.startswith(SESSION_PREFIX):
            sessions = self.runtime.deployment.access.sessions
            try:
                principal = await run_in_threadpool(sessions.principal, text)
            except Unauthenticated as exc:
                raise AuthenticationError(exc.message) from None
            return self.result(principal)
        return await super().authenticate(conn)


def audited_guard(runtime: Runtime) -> Callable[[KmsRoute, Scope], None]:
    """The route's permission check, with every refusal audited."""

    def guard(route: KmsRoute, scope: Scope) -> None:
        try:
            require_permission(route, scope)
        except (PermissionDenied, Unauthenticated) as exc:
            runtime.deployment.access.audit.record_batched(AuditEvent(
                at=time(), actor=_actor(scope), action=route.name or route.path,
                outcome=exc.code, key=scope.get("path_params", {}).get("name"),
                source=source_of(scope), detail=exc.log_detail))
            raise

    return guard


def audit_management(route: KmsRoute, runtime: Runtime) -> None:
    """Make ``route``'s endpoint record its call: a write-ahead record before
    a change runs, the outcome (durable for changes, batched for reads)
    before the response goes out."""
    endpoint = route.endpoint
    call = endpoint if inspect.iscoroutinefunction(endpoint) else \
        functools.partial(run_in_threadpool, endpoint)
    action = route.name or route.path
    reads = route.method == "GET"

    async def audited(request: Request) -> Response:
        scope = request.scope
        audit = runtime.deployment.access.audit
        params = scope.get("path_params", {})
        key = params.get("name")
        target = params.get("app_id") or params.get("user") or params.get("request_id")
        source = source_of(scope)
        request_id = secrets.token_hex(8)

        def event(outcome: str, detail: str | None = None) -> AuditEvent:
            return AuditEvent(at=time(), actor=_actor(scope), action=action, outcome=outcome,
                              key=key if isinstance(key, str) else None,
                              target=target if isinstance(target, str) else None,
                              source=source, detail=detail, request_id=request_id)

        async def record(outcome: AuditEvent) -> None:
            if reads:
                audit.record_batched(outcome)
            else:  # durable before the response leaves
                await run_in_threadpool(audit.record, outcome)

        # Key changes audit themselves with these (kmsframe.access.control).
        source_token = request_source.set(source)
        id_token = current_request_id.set(request_id)
        try:
            if not reads:
                # Write-ahead, durable (unsealed: the outcome record seals it):
                # raises Unavailable, and nothing runs, if it cannot be written.
                await run_in_threadpool(audit.record, event(STARTED), seal=False)
            response: Response = await call(request)
        except KmsError as exc:
            await record(event(exc.code, exc.log_detail))
            raise
        except Exception:
            await record(event("internal_error"))
            raise
        finally:
            current_request_id.reset(id_token)
            request_source.reset(source_token)
        # If this cannot be written the caller gets 503; the record stays
        # queued and is written once the log works again.
        await record(event("ok" if response.status_code < 400 else f"http_{response.status_code}"))
        return response

    route.app = request_response(audited)


def principal_of(scope: Scope) -> Principal:
    return scope["user"].principal

"""Assemble the HTTP service: a starlette app built from a deployment factory.

No decorators: :func:`build_app` passes the route tables, the middleware,
the exception handlers and the lifespan to ``Starlette(...)``, then wraps the
result in :class:`Instrumented` (request metrics, and the last net under
unhandled errors). Each worker process calls ``factory`` in its lifespan and
closes the deployment on shutdown.

Request path: ``Instrumented`` → (crypto routes: :mod:`~kmsframe.http.fastpath`, which
runs the same guard and endpoint directly) → starlette's ``ServerErrorMiddleware`` →
``AuthenticationMiddleware`` (bearer token → credentials) →
``ExceptionMiddleware`` (errors → JSON, :mod:`kmsframe.http.errors`) → router
→ ``KmsRoute.handle`` (guard: the route's permission) → endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from time import perf_counter

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..authorization import Principal
from ..deployment import Deployment
from . import openapi
from .access import SessionBearerBackend, audit_management, audited_guard
from .auth import BearerBackend, on_auth_error
from .errors import exception_handlers, log_unhandled
from .fastpath import FastPath
from .responses import json_response
from .routes import access, approvals, apps, crypto, health, keys, signing
from .routing import Guard, KmsRoute
from .runtime import HttpSettings, Runtime

log = logging.getLogger("kmsframe.http")
# Probes and self-description: not management, not worth a record each
# (logins are audited by the access control itself).
_UNAUDITED = frozenset({None, "health.read", "metrics.read", "openapi.read"})


class Instrumented:
    """Outermost ASGI layer: counts every request and swallows what escaped.

    Starlette answers an unhandled exception with our 500 body and then
    re-raises it for the server to log with a full stack; we log one line
    instead (:func:`~kmsframe.http.errors.log_unhandled`) so no stack trace,
    and nothing from the request, reaches the log.
    """

    def __init__(self, app: Starlette, runtime: Runtime, fast: FastPath | None) -> None:
        self.app: ASGIApp = app
        self.starlette = app
        self.runtime = runtime
        self.metrics = runtime.metrics
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        if self.fast is not None:
            matched = self.fast.match(scope)
            if matched is not None:
                status = await self.fast.handle(matched[0], matched[1], scope, receive, send)
                if status:
                    self.metrics.record(matched[0].path, "POST", status, perf_counter() - start,
                                        scope.get("kms.error"))
                    return
        status = 500

        async def watch(message: dict) -> None:  # type: ignore[type-arg]
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - the last net: log one line, answer 500
            log_unhandled(exc, scope["method"], scope["path"])
            scope["kms.error"] = "internal_error"
            status = 500
        route = scope.get("kms.route")
        self.metrics.record(route.path if route is not None else "(unmatched)", scope["method"],
                            status, perf_counter() - start, scope.get("kms.error"))


async def _publish_metrics(runtime: Runtime, every: float = 1.0) -> None:
    """Share this worker's counters with the others (kmsframe.http.metrics)."""
    while True:
        await asyncio.sleep(every)
        if runtime.exchange is not None:
            try:
                await run_in_threadpool(runtime.exchange.publish)
            except OSError as exc:
                log.warning("could not publish metrics: %s", exc.strerror)


def build_routes(runtime: Runtime) -> list[KmsRoute]:
    table = [*crypto.routes(runtime), *signing.routes(runtime), *keys.routes(runtime),
             *apps.routes(runtime), *health.routes(runtime), *access.routes(runtime),
             *approvals.routes(runtime)]
    doc_holder: dict[str, Response] = {}

    async def openapi_json(request: Request) -> Response:
        if "doc" not in doc_holder:
            doc_holder["doc"] = json_response(openapi.document(table))
        return doc_holder["doc"]

    table.append(KmsRoute("/v1/openapi.json", openapi_json, method="GET",
                          permission="openapi.read", name="openapi",
                          doc={"summary": "This OpenAPI 3.1 document", "response": "OpenApi"}))
    return table


def build_app(factory: Callable[[], Deployment], settings: HttpSettings | None = None, *,
              guard: Guard | None = None,
              permissions: Callable[[Principal], frozenset[str]] | None = None,
              ) -> Instrumented:
    """The ASGI app serving the deployment ``factory`` builds (once per worker).

    By default routes are guarded by the role table of
    :mod:`kmsframe.access.roles`, every refusal and every management call is
    audited, and human session tokens are accepted beside app tokens.
    """
    runtime = Runtime(factory, settings or HttpSettings())
    routes = build_routes(runtime)
    guard = guard or audited_guard(runtime)
    for route in routes:
        route.guard = guard
        if not isinstance(route.endpoint, crypto.CryptoEndpoint) and \
                route.permission not in _UNAUDITED:
            audit_management(route, runtime)  # crypto routes audit per item

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.open()
        # Everything alive now (modules, plugins, the deployment) lives as long
        # as the worker: keep it out of the garbage collector's full passes,
        # which would otherwise walk it all and show up as latency spikes.
        gc.freeze()
        publisher = asyncio.get_running_loop().create_task(_publish_metrics(runtime))
        try:
            yield
        finally:
            publisher.cancel()
            runtime.close()

    backend = SessionBearerBackend(runtime) if permissions is None else \
        BearerBackend(lambda: runtime.apps, permissions)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AuthenticationMiddleware, backend=backend,
                               on_error=on_auth_error)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    return Instrumented(app, runtime, FastPath(routes, backend) if runtime.settings.fast_path else None)

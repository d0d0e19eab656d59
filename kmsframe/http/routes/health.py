"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...errors import KmsError
from ..responses import json_response
from ..routing import KmsRoute
from ..runtime import Runtime

_OK = b'{"status":"ok"}'


async def healthz(request: Request) -> Response:
    return Response(_OK, media_type="application/json")


# What /readyz shows of each HSM token (redundant PKCS#11 tokens): no paths, no secrets.
_TOKEN_FIELDS = ("label", "up", "error", "current_master_key", "hardware")


def _readiness(runtime: Runtime) -> tuple[bool, dict[str, str], list[dict[str, Any]]]:
    checks: dict[str, str] = {}
    tokens: list[dict[str, Any]] = []
    try:
        runtime.deployment.storage.ping()
        checks["storage"] = "ok"
    except KmsError as exc:
        checks["storage"] = exc.code
    except Exception:  # noqa: BLE001 - an unmapped driver error: "not ready", not a 500
        checks["storage"] = "unavailable"
    try:
        status = runtime.deployment.hsm.status()
        checks["hsm"] = "ok" if status.ready and not status.sealed else \
            ("sealed" if status.sealed else "unavailable")
        tokens = [{f: t.get(f) for f in _TOKEN_FIELDS} for t in status.tokens]
    except Exception:  # noqa: BLE001 - likewise for the HSM
        checks["hsm"] = "unavailable"
    return all(v == "ok" for v in checks.values()), checks, tokens


async def readyz(runtime: Runtime, request: Request) -> Response:
    ready, checks, tokens = await run_in_threadpool(_readiness, runtime)
    body: dict[str, Any] = {"status": "ready", "checks": checks} if ready else {
        "error": {"code": "not_ready", "message": "a dependency is down"}, "checks": checks}
    if tokens:  # an HSM with several tokens: each one's state (issue 5)
        body["hsm_tokens"] = tokens
    return json_response(body, status=200 if ready else 503)


async def metrics(runtime: Runtime, request: Request) -> Response:
    exchange = runtime.exchange
    snapshots = None if exchange is None else await run_in_threadpool(exchange.collect)
    return Response(runtime.metrics.render(snapshots), media_type="text/plain; version=0.0.4")


def routes(runtime: Runtime) -> list[KmsRoute]:
    return [
        KmsRoute("/healthz", healthz, method="GET", permission=None, name="healthz",
                 doc={"summary": "Liveness (no authentication)", "response": "Health"}),
        KmsRoute("/readyz", partial(readyz, runtime), method="GET", permission="health.read",
                 name="readyz",
                 doc={"summary": "Readiness: storage and HSM reachable", "response": "Readiness",
                      "errors": [503]}),
        KmsRoute("/metrics", partial(metrics, runtime), method="GET",
                 permission="metrics.read", name="metrics",
                 doc={"summary": "Prometheus metrics of the whole server", "response": "text"}),
    ]

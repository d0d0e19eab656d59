"""A bug in a route: the caller gets a bare 500, the log one line, no trace."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.requests import Request

from kmsframe.http import build_app
from kmsframe.http.routing import KmsRoute


def test_unhandled_exception_is_a_bare_500(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Request) -> None:
        raise RuntimeError("plaintext 4111-1111 leaked into a message")

    app = build_app(lambda: None)  # type: ignore[arg-type, return-value]
    app.starlette.router.routes.append(KmsRoute(
        "/broken", broken, method="GET", permission=None, doc={"summary": "x", "response": "Health"}))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/broken")

    with caplog.at_level(logging.INFO):
        r = asyncio.run(call())
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    lines = [rec for rec in caplog.records if rec.name == "kmsframe.http"]
    assert len(lines) == 1
    text = lines[0].getMessage()
    assert "RuntimeError" in text and "test_internal_errors.py" in text
    assert "4111" not in text and lines[0].exc_info is None
    assert "4111" not in caplog.text and "Traceback" not in caplog.text
    assert 'code="internal_error"' in app.runtime.metrics.render()

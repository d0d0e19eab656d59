"""The one place kmsframe errors become HTTP responses.

Core errors know nothing of HTTP; here each class maps to a status by walking
its class hierarchy, so a new subclass inherits its parent's status. The body
is always ``{"error": {"code": ..., "message": ...}}``. Anything that is not a
:class:`~kmsframe.errors.KmsError` is a bug: it is logged here (with its
stack, server-side only) and the caller sees ``500 internal_error`` and
nothing else. ``log_detail`` is logged, never sent.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import errors as e

log = logging.getLogger("kmsframe.http")


# -- errors only the HTTP layer raises (still plain KmsErrors) ----------------


class MalformedJson(e.InvalidRequest):
    code = "malformed_json"
    default_message = "the request body is not valid JSON"


class ValidationFailed(e.InvalidRequest):
    """The JSON is well-formed but a field is missing or of the wrong type."""

    code = "validation_error"
    default_message = "the request does not match the expected shape"


class RequestTooLarge(e.PayloadTooLarge):
    code = "request_too_large"
    default_message = "the request body is too large"


class RouteNotFound(e.NotFound):
    code = "route_not_found"
    default_message = "no such endpoint"


class MethodNotAllowed(e.InvalidRequest):
    code = "method_not_allowed"
    default_message = "the endpoint does not accept this method"


# Most specific first is not needed: the lookup walks each class's MRO.
STATUS: dict[type[e.KmsError], int] = {
    e.KmsError: 500,
    e.InvalidRequest: 400,
    ValidationFailed: 422,
    MethodNotAllowed: 405,
    e.PayloadTooLarge: 413,
    e.DecryptionFailed: 400,
    e.OperationNotAllowed: 409,
    e.Unauthenticated: 401,
    e.PermissionDenied: 403,
    e.RateLimited: 429,
    e.NotFound: 404,
    e.Conflict: 409,
    e.ConfigurationError: 500,
    e.Unavailable: 503,
    e.IntegrityError: 500,
}

_status_cache: dict[type, int] = {}


def status_for(exc: e.KmsError) -> int:
    cls = type(exc)
    status = _status_cache.get(cls)
    if status is None:
        status = next(STATUS[c] for c in cls.__mro__ if c in STATUS)
        _status_cache[cls] = status
    return status


def error_object(exc: e.KmsError) -> dict[str, str]:
    return {"code": exc.code, "message": exc.message}


def error_body(exc: e.KmsError) -> bytes:
    return orjson.dumps({"error": error_object(exc)})


def log_error(exc: e.KmsError, status: int) -> None:
    """Server-side trace of a refused request: code and log detail, never secrets."""
    if status >= 500:
        log.error("request failed: %s%s", exc.code,
                  f" ({exc.log_detail})" if exc.log_detail else "")
    elif exc.log_detail:
        log.info("request refused: %s (%s)", exc.code, exc.log_detail)


def error_response(exc: e.KmsError, headers: dict[str, str] | None = None) -> Response:
    status = status_for(exc)
    log_error(exc, status)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return Response(error_body(exc), status_code=status, headers=headers,
                    media_type="application/json")


INTERNAL_BODY = orjson.dumps({"error": {"code": "internal_error", "message": "internal error"}})


# -- starlette exception handlers ---------------------------------------------


def kms_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.KmsError)
    request.scope["kms.error"] = exc.code
    return error_response(exc)


def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no route, wrong method) in our error shape."""
    assert isinstance(exc, HTTPException)
    mapped: e.KmsError
    if exc.status_code == 404:
        mapped = RouteNotFound()
    elif exc.status_code == 405:
        mapped = MethodNotAllowed()
        headers = dict(exc.headers or {})
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
        request.scope["kms.error"] = mapped.code
        return error_response(mapped, headers=headers)
    elif exc.status_code == 413:
        mapped = RequestTooLarge()
    elif exc.status_code == 401:
        mapped = e.Unauthenticated()
    else:
        mapped = e.InvalidRequest()
    request.scope["kms.error"] = mapped.code
    return error_response(mapped, headers=dict(exc.headers or {}))


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route accepts at this path (starlette's 405 names one route's)."""
    from starlette.routing import Match, Route

    scope = {"type": "http", "path": request.url.path, "root_path": "", "method": ""}
    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(scope)[0] is not Match.NONE:
            allowed |= route.methods or set()
    return allowed


def internal_error_handler(request: Request, exc: Exception) -> Response:
    """The last resort: tell the caller nothing. Starlette re-raises the
    exception after this; :func:`log_unhandled` (outermost) logs it."""
    request.scope["kms.error"] = "internal_error"
    return Response(INTERNAL_BODY, status_code=500, media_type="application/json")


def log_unhandled(exc: BaseException, method: str, path: str) -> None:
    """Log a bug on one line: its type and where it was raised.

    Neither the message nor the stack's locals are logged: either could carry
    request data (a plaintext) into the log.
    """
    tb = exc.__traceback__
    where = "?"
    while tb is not None:
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    log.error("internal error: unhandled %s at %s on %s %s", type(exc).__name__, where,
              method, path)


def exception_handlers() -> dict[Any, Any]:
    return {
        e.KmsError: kms_error_handler,
        HTTPException: http_exception_handler,
        Exception: internal_error_handler,
    }

"""A shortcut for the crypto routes: the same route, guard and endpoint,
without starlette's routing, authentication middleware and exception layers.

``POST /v1/keys/{name}/{encrypt|decrypt|rewrap|datakey}`` is most of a KMS's
traffic, and on this path starlette's generic layers cost more than the AES
call (see ``docs/performance.md``). :class:`FastPath` matches those paths with
one ``split``, authenticates from the token cache, fills the scope exactly as
the full stack would (``auth``, ``user``, ``path_params``, ``kms.route``),
runs the route's own guard and endpoint, and maps errors with
:mod:`kmsframe.http.errors`. A request it cannot finish from memory (a token
not yet in the cache) goes down the full stack instead, so behaviour is the
same either way; the HTTP tests run against both.
"""

from __future__ import annotations

from starlette.authentication import AuthenticationError
from starlette.types import Receive, Scope, Send

from ..errors import KmsError, Unauthenticated
from .auth import BearerBackend, client_certificate
from .errors import INTERNAL_BODY, error_body, log_error, log_unhandled, status_for
from .responses import send_json
from .routes.crypto import CryptoEndpoint
from .routing import KmsRoute

_UNAUTHENTICATED = Unauthenticated("send 'Authorization: Bearer <token>'")


class FastPath:
    def __init__(self, routes: list[KmsRoute], backend: BearerBackend) -> None:
        self.backend = backend
        self.by_op = {route.path.rsplit("/", 1)[1]: route for route in routes
                      if isinstance(route.endpoint, CryptoEndpoint)}

    def match(self, scope: Scope) -> tuple[KmsRoute, str] | None:
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        parts = scope["path"].split("/")
        # ['', 'v1', 'keys', name, op]
        if len(parts) != 5 or parts[1] != "v1" or parts[2] != "keys" or not parts[3]:
            return None
        route = self.by_op.get(parts[4])
        return None if route is None else (route, parts[3])

    async def handle(self, route: KmsRoute, name: str, scope: Scope, receive: Receive,
                     send: Send) -> int:
        """Serve the request and return its status; 0 if it must take the full
        stack instead (nothing has been read or sent then)."""
        try:
            try:
                token = self.backend.token(scope)
            except AuthenticationError as exc:
                raise Unauthenticated(str(exc)) from None
            if token is None:
                if client_certificate(scope) is not None:
                    return 0  # mutual TLS: the full stack looks the certificate up
                raise _UNAUTHENTICATED
            known, principal = self.backend.registry().cached(token)
            if not known:
                return 0
            if principal is None:
                raise Unauthenticated("the token is not valid")
            scope["auth"], scope["user"] = self.backend.result(principal)
            scope["path_params"] = {"name": name}
            scope["kms.route"] = route
            route.guard(route, scope)
            await route.endpoint(scope, receive, send)
            return 200
        except KmsError as exc:
            status = status_for(exc)
            log_error(exc, status)
            scope["kms.error"] = exc.code
            headers = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await send_json(send, status, error_body(exc), headers)
            return status
        except Exception as exc:  # noqa: BLE001 - the full stack's last resort, here
            log_unhandled(exc, scope["method"], scope["path"])
            scope["kms.error"] = "internal_error"
            await send_json(send, 500, INTERNAL_BODY)
            return 500

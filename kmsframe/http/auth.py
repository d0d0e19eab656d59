"""Bearer-token authentication, in one starlette ``AuthenticationBackend``.

Every request but ``/healthz`` carries ``Authorization: Bearer <token>``.
The token is either the deployment's root (admin) token or an app token
(:mod:`kmsframe.apps`). The backend returns credentials whose scopes are the
permissions of the caller's roles; each route names the one permission it
needs (:mod:`kmsframe.http.routing`). To change who may do what, change
:data:`ROLE_PERMISSIONS` or hand :func:`build_backend` another ``permissions``
function; to add a way of authenticating, subclass :class:`BearerBackend`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

from ..apps import AppRegistry
from ..authorization import Principal
from ..errors import Unauthenticated
from .errors import error_response

ALL = "*"
# Permission names are the ones routes declare; "*" grants every permission.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({ALL}),
    "app": frozenset({"crypto.encrypt", "crypto.decrypt", "crypto.rewrap", "crypto.datakey",
                      "crypto.sign", "crypto.verify", "crypto.mac", "crypto.public-key",
                      "health.read", "openapi.read"}),
    "auditor": frozenset({"keys.read", "apps.read", "health.read", "metrics.read",
                          "openapi.read"}),
}


def role_permissions(principal: Principal) -> frozenset[str]:
    granted: set[str] = set()
    for role in principal.roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)


class Credentials(AuthCredentials):
    """Starlette credentials with a set for O(1) permission checks."""

    def __init__(self, scopes: Iterable[str]) -> None:
        self.granted = frozenset(scopes)
        super().__init__(sorted(self.granted))

    def allows(self, permission: str) -> bool:
        return permission in self.granted or ALL in self.granted


class Caller(BaseUser):
    """The authenticated principal, as starlette's ``request.user``."""

    __slots__ = ("principal",)

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return str(self.principal)

    @property
    def identity(self) -> str:
        return self.principal.id


class BearerBackend(AuthenticationBackend):
    def __init__(self, registry: Callable[[], AppRegistry],
                 permissions: Callable[[Principal], frozenset[str]] = role_permissions) -> None:
        # A getter: each worker opens its registry in the lifespan, after
        # the middleware stack is built.
        self.registry = registry
        self.permissions = permissions
        self._results: dict[Principal, tuple[Credentials, Caller]] = {}

    def result(self, principal: Principal) -> tuple[Credentials, Caller]:
        found = self._results.get(principal)
        if found is None:
            if len(self._results) > 10_000:
                self._results.clear()
            found = (Credentials(self.permissions(principal)), Caller(principal))
            self._results[principal] = found
        return found

    @staticmethod
    def token(scope: Scope) -> str | None:
        """The bearer token of a request; None without an Authorization header."""
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if header is None:
            return None
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        try:
            return token.strip().decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationError("the token is not valid") from None

    async def authenticate(self, conn: HTTPConnection) -> tuple[Credentials, Caller] | None:
        text = self.token(conn.scope)
        if text is None:
            # Mutual TLS: a verified client certificate registered to an app.
            fingerprint = client_certificate(conn.scope)
            if fingerprint is None:
                return None
            principal = await run_in_threadpool(self.registry().authenticate_certificate,
                                                fingerprint)
            # An unregistered certificate is simply not an identity: routes
            # that need one answer 401, /healthz still answers.
            return None if principal is None else self.result(principal)
        registry = self.registry()
        known, principal = registry.cached(text)
        if not known:
            # A storage read: off the event loop.
            principal = await run_in_threadpool(registry.authenticate, text)
        if principal is None:
            raise AuthenticationError("the token is not valid")
        return self.result(principal)


def client_certificate(scope: Scope) -> str | None:
    """The verified client certificate's SHA-256 (see :mod:`kmsframe.http.protocol`)."""
    return scope.get("extensions", {}).get("tls", {}).get("client_cert_sha256")


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    conn.scope["kms.error"] = Unauthenticated.code
    return error_response(Unauthenticated(str(exc)))

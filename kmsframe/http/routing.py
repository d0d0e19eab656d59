"""Routes that say what they need: a permission and their OpenAPI description.

:class:`KmsRoute` is a starlette ``Route`` with three more attributes:
``permission`` (None: open to anyone, as ``/healthz``), ``doc`` (the OpenAPI
operation, see :mod:`kmsframe.http.openapi`) and ``guard``, the check run
after routing and before the endpoint. The default guard requires an
authenticated caller whose credentials allow ``permission``; the
access-control layer can hand ``build_app`` another guard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from ..errors import PermissionDenied, Unauthenticated

Guard = Callable[["KmsRoute", Scope], None]


def require_permission(route: KmsRoute, scope: Scope) -> None:
    if route.permission is None:
        return
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    if not scope["auth"].allows(route.permission):
        raise PermissionDenied(f"this needs the {route.permission!r} permission",
                               log_detail=f"{user.display_name} lacks {route.permission}")


class KmsRoute(Route):
    def __init__(self, path: str, endpoint: Callable[..., Any], *, method: str,
                 permission: str | None, doc: Mapping[str, Any],
                 guard: Guard = require_permission, name: str | None = None) -> None:
        super().__init__(path, endpoint, methods=[method], name=name)
        self.method = method
        self.permission = permission
        self.doc = doc
        self.guard = guard

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["kms.route"] = self
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] in self.methods:
            self.guard(self, scope)
        await super().handle(scope, receive, send)

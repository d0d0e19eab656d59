"""Role checks on the key service's management calls, as a built-in
``kms_authorize`` plugin.

Transports check each route's declared permission before calling the core;
this plugin checks again inside the core, so an in-process caller with a
human or app principal cannot skip it. Humans may not run a sensitive
operation directly: it must go through an approved dual-control request,
whose executor acts as the ``approval`` principal. The ``system`` principal
(the local CLI and the scheduler) is not restricted here.
"""

from __future__ import annotations

from ..authorization import AuthorizationRequest, Denial
from ..hookspecs import hookimpl
from .roles import SENSITIVE_OPERATIONS, allowed, permission_for

PLUGIN_NAME = "kmsframe.rbac"
_CRYPTO_OPS = frozenset({"encrypt", "decrypt", "rewrap", "datakey", "sign", "verify", "mac"})


@hookimpl
def kms_authorize(request: AuthorizationRequest) -> Denial | None:
    """Deny management calls whose principal lacks the permission."""
    principal = request.principal
    if principal.kind in ("system", "approval") or request.operation in _CRYPTO_OPS:
        return None  # crypto is judged by the key's bindings
    permission = permission_for(request.operation)
    if permission is None:
        return Denial(f"operation {request.operation!r} has no permission assigned")
    if not allowed(principal, permission):
        return Denial(f"{principal} lacks permission {permission} for {request.operation}")
    if request.operation in SENSITIVE_OPERATIONS:
        return Denial(f"{request.operation} needs an approved dual-control request")
    return None

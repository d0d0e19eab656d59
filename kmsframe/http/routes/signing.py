"""Signature, MAC and public-key routes: sign, verify, mac, verify-mac, public-key.

They follow the crypto routes (:mod:`.crypto`): plain ASGI endpoints calling
the in-process :class:`~kmsframe.service.KeyService`, and every POST also takes
a batch ``{"items": [...]}``. Messages travel as base64; signatures and MACs
as text with the 5-digit version prefix (``10001`` + base64), exactly like
ciphertexts. ``verify`` and ``verify-mac`` answer ``{"valid": true|false}``:
a malformed or unknown signature is simply not valid, while problems with the
key or the request are errors. Asymmetric ``/encrypt`` and ``/decrypt`` are
the crypto routes themselves.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...authorization import Principal
from ...model import FIRST_VERSION, LAST_VERSION
from ...service import KeyService
from ..body import base64_field, check_fields, json_object, string
from ..errors import ValidationFailed
from ..responses import json_response
from ..routing import KmsRoute
from ..runtime import Runtime
from .crypto import crypto_route

_SIGN = frozenset({"message", "options"})
_VERIFY = frozenset({"message", "signature", "options"})
_MAC = frozenset({"message"})
_VERIFY_MAC = frozenset({"message", "mac"})
_MAX_SIGNATURE = 1 << 16  # text of the largest signature (RSA-4096: 690 chars) with room


def _fields(obj: Any, allowed: frozenset[str]) -> dict[str, Any]:
    check_fields(json_object(obj), allowed)
    return obj


def _options(obj: dict[str, Any]) -> dict[str, Any] | None:
    value = obj.get("options")
    if value is not None and type(value) is not dict:
        raise ValidationFailed("'options' must be an object")
    return value


def sign_one(service: KeyService, name: str, obj: dict[str, Any],
             principal: Principal) -> dict[str, Any]:
    _fields(obj, _SIGN)
    result = service.sign(name, base64_field(obj, "message"), _options(obj), principal=principal)
    return {"signature": result.signature, "version": result.version}


def verify_one(service: KeyService, name: str, obj: dict[str, Any],
               principal: Principal) -> dict[str, Any]:
    _fields(obj, _VERIFY)
    valid = service.verify(name, base64_field(obj, "message"),
                           string(obj, "signature", max_length=_MAX_SIGNATURE), _options(obj),
                           principal=principal)
    return {"valid": valid}


def mac_one(service: KeyService, name: str, obj: dict[str, Any],
            principal: Principal) -> dict[str, Any]:
    _fields(obj, _MAC)
    result = service.mac(name, base64_field(obj, "message"), principal=principal)
    return {"mac": result.mac, "version": result.version}


def verify_mac_one(service: KeyService, name: str, obj: dict[str, Any],
                   principal: Principal) -> dict[str, Any]:
    _fields(obj, _VERIFY_MAC)
    valid = service.verify_mac(name, base64_field(obj, "message"),
                               string(obj, "mac", max_length=_MAX_SIGNATURE), principal=principal)
    return {"valid": valid}


def _version_query(request: Request) -> int | None:
    params = request.query_params
    unknown = set(params) - {"version"}
    if unknown:
        raise ValidationFailed(f"unknown query parameters: {', '.join(sorted(unknown))}")
    raw = params.get("version")
    if raw is None:
        return None
    if not (len(raw) == 5 and raw.isascii() and raw.isdigit()) \
            or not FIRST_VERSION <= int(raw) <= LAST_VERSION:
        raise ValidationFailed(
            f"'version' must be a key version ({FIRST_VERSION}-{LAST_VERSION})")
    return int(raw)


def routes(runtime: Runtime) -> list[KmsRoute]:
    def route(op: str, one: Any, doc: dict[str, Any], permission: str | None = None) -> KmsRoute:
        return crypto_route(runtime, op, one, doc, permission=permission)

    async def public_key(request: Request) -> Response:
        version = _version_query(request)
        found = runtime.service.public_key(request.path_params["name"], version,
                                           principal=request.user.principal)
        return json_response({"version": found.version, "pem": found.pem})

    return [
        route("sign", sign_one, {
            "summary": "Sign a message with the key's primary version",
            "request": "SignRequest", "response": "SignResponse", "batch": True}),
        route("verify", verify_one, {
            "summary": "Check a signature with the version its prefix names",
            "request": "VerifyRequest", "response": "VerifyResponse", "batch": True}),
        route("mac", mac_one, {
            "summary": "Compute a MAC with the key's primary version",
            "request": "MacRequest", "response": "MacResponse", "batch": True}),
        route("verify-mac", verify_mac_one, {
            "summary": "Check a MAC with the version its prefix names (constant time)",
            "request": "VerifyMacRequest", "response": "VerifyResponse", "batch": True},
            # Checking a MAC is the key service's "verify" operation (model.Operation).
            permission="crypto.verify"),
        KmsRoute("/v1/keys/{name}/public-key", public_key, method="GET",
                 permission="crypto.public-key", name="crypto.public-key",
                 doc={"summary": "The SubjectPublicKeyInfo PEM of the primary version "
                                 "(or ?version=) of an asymmetric key",
                      "response": "PublicKeyResponse",
                      "query": {"version": "integer"}}),
    ]

"""The OpenAPI 3.1 document, built from the routes themselves.

Every :class:`~kmsframe.http.routing.KmsRoute` carries a small ``doc``:
``summary``, ``request`` (a schema name; a trailing ``?`` means the body is
optional), ``response`` (a schema name, or ``"text"``), ``status`` (default
200), ``batch`` (the body may also be ``{"items": [...]}``), ``query``
(optional query parameters: name → JSON type), ``errors`` (extra statuses)
and ``also`` (other success statuses: ``{202: "Approval"}``). This module
turns those into paths and adds the shared schemas, so the document cannot
drift from the routing table (a test checks both ways).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .. import __version__
from .access_schemas import ACCESS_SCHEMAS
from .routing import KmsRoute

_CONTEXT = {"type": "object", "additionalProperties": {"type": "string"},
            "description": "Encryption context, bound to the ciphertext as associated data."}
_B64 = {"type": "string", "contentEncoding": "base64"}
_REASON = {"type": "string", "maxLength": 1024}
_VERSION = {"type": "integer", "minimum": 10001, "maximum": 99999}
_CIPHERTEXT = {"type": "string", "description": "5-digit version prefix + base64"}
_SIGNATURE = {"type": "string", "description": "5-digit version prefix + base64"}
_SIGN_OPTIONS = {"type": "object", "description": "Algorithm options; SM2 takes "
                 "{\"distinguishing_id\": \"...\"} (default 1234567812345678).",
                 "properties": {"distinguishing_id": {"type": "string", "minLength": 1}},
                 "additionalProperties": False}


def _obj(properties: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    """A closed object; an optional field may also be null, which means absent."""
    required = list(required)
    properties = {name: schema if name in required else {"anyOf": [schema, {"type": "null"}]}
                  for name, schema in properties.items()}
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


_COUNT = {"type": "integer", "minimum": 2, "maximum": 255}
_SHARES = _obj({"shares": _COUNT, "threshold": _COUNT}, ["shares", "threshold"])


SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": {"type": "string"}, "message": {"type": "string"}},
                                 ["code", "message"])}, ["error"]),
    "EncryptRequest": _obj({"plaintext": _B64, "context": _CONTEXT}, ["plaintext"]),
    "EncryptResponse": _obj({"ciphertext": _CIPHERTEXT, "version": _VERSION},
                            ["ciphertext", "version"]),
    "DecryptRequest": _obj({"ciphertext": _CIPHERTEXT, "context": _CONTEXT}, ["ciphertext"]),
    "DecryptResponse": _obj({"plaintext": _B64}, ["plaintext"]),
    "RewrapRequest": _obj({"ciphertext": _CIPHERTEXT, "context": _CONTEXT,
                           "new_context": _CONTEXT}, ["ciphertext"]),
    "DataKeyRequest": _obj({"context": _CONTEXT,
                            "size": {"type": "integer", "minimum": 16, "maximum": 64},
                            "include_plaintext": {"type": "boolean", "default": True}}),
    "DataKeyResponse": _obj({"ciphertext": _CIPHERTEXT, "version": _VERSION,
                             "plaintext": _B64}, ["ciphertext", "version"]),
    "SignRequest": _obj({"message": _B64, "options": _SIGN_OPTIONS}, ["message"]),
    "SignResponse": _obj({"signature": _SIGNATURE, "version": _VERSION},
                         ["signature", "version"]),
    "VerifyRequest": _obj({"message": _B64, "signature": _SIGNATURE, "options": _SIGN_OPTIONS},
                          ["message", "signature"]),
    "VerifyResponse": _obj({"valid": {"type": "boolean"}}, ["valid"]),
    "MacRequest": _obj({"message": _B64}, ["message"]),
    "MacResponse": _obj({"mac": _SIGNATURE, "version": _VERSION}, ["mac", "version"]),
    "VerifyMacRequest": _obj({"message": _B64, "mac": _SIGNATURE}, ["message", "mac"]),
    "PublicKeyResponse": _obj({"version": _VERSION, "pem": {
        "type": "string", "description": "SubjectPublicKeyInfo, PEM"}}, ["version", "pem"]),
    "ReasonRequest": _obj({"reason": _REASON}),
    "NewMasterKeyRequest": _obj({"reason": _REASON, "custodians": _SHARES}),
    "BackupRequest": _obj({"reason": _REASON, **_SHARES["properties"]}, ["shares", "threshold"]),
    "RestoreRequest": _obj({"reason": _REASON, "make_current": {"type": "boolean"},
                            "tokens": {"type": "array", "items": {"type": "string"}}}),
    "ScheduleDeletionRequest": _obj({"reason": _REASON, "waiting_days": {
        "type": "number", "minimum": 0, "maximum": 3650}}),
    "VersionStateRequest": _obj({"state": {"type": "string", "enum": [
        "expired", "retired", "compromised", "destroyed"]}, "reason": _REASON}, ["state"]),
    "MinDecryptionVersionRequest": _obj({"version": _VERSION, "reason": _REASON}, ["version"]),
    "RotationPolicy": _obj({"period_seconds": {"type": "integer", "minimum": 60},
                            "notice_seconds": {"type": "integer", "minimum": 0}},
                           ["period_seconds"]),
    "CreateKeyRequest": _obj({
        "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
        "algorithm": {"type": "string", "default": "aes-256-gcm"},
        "purpose": {"type": "string", "enum": ["encrypt", "sign", "mac"]},
        "rotation_policy": {"$ref": "#/components/schemas/RotationPolicy"},
        "description": {"type": "string", "maxLength": 1024},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }, ["name"]),
    "KeyVersion": {"type": "object", "properties": {
        "version": _VERSION, "state": {"type": "string"}, "primary": {"type": "boolean"},
        "created_at": {"type": "number"}}, "required": ["version", "state", "primary"]},
    "Key": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "algorithm": {"type": "string"},
        "purpose": {"type": "string"}, "status": {"type": "string"},
        "primary_version": _VERSION, "min_decryption_version": _VERSION,
        "versions": {"type": "array", "items": {"$ref": "#/components/schemas/KeyVersion"}}},
        "required": ["id", "name", "algorithm", "purpose", "status", "primary_version",
                     "versions"]},
    "KeyList": _obj({"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Key"}}},
                    ["keys"]),
    "CreateAppRequest": _obj({
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$"},
        "roles": {"type": "array", "items": {"type": "string", "minLength": 1},
                  "minItems": 1},
        "client_cert_sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                               "description": "Mutual TLS: this client certificate "
                                              "(SHA-256 of its DER) also identifies the app"},
    }, ["name"]),
    "App": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string", "enum": ["active", "revoked"]},
        "created_at": {"type": "number"}, "created_by": {"type": "string"},
        "client_cert_sha256": {"type": ["string", "null"]}},
        "required": ["id", "name", "roles", "status"]},
    "CreatedApp": {"allOf": [{"$ref": "#/components/schemas/App"}, {
        "type": "object", "properties": {"token": {"type": "string", "description":
                                                   "The bearer token; shown only here."}},
        "required": ["token"]}]},
    "AppList": _obj({"apps": {"type": "array", "items": {"$ref": "#/components/schemas/App"}}},
                    ["apps"]),
    "OpenApi": {"type": "object", "description": "An OpenAPI 3.1 document"},
    "Health": _obj({"status": {"type": "string"}}, ["status"]),
    "Readiness": {"type": "object", "properties": {
        "status": {"type": "string"},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        "hsm_tokens": {"type": "array", "items": {"type": "object", "properties": {
            "label": {"type": "string"}, "up": {"type": "boolean"},
            "error": {"type": ["string", "null"]},
            "current_master_key": {"type": ["string", "null"]},
            "hardware": {"type": "boolean"}}}}}},
}

SCHEMAS.update(ACCESS_SCHEMAS)

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(route: KmsRoute) -> dict[str, Any]:
    doc = route.doc
    op: dict[str, Any] = {"operationId": route.name, "summary": doc["summary"]}
    params = _PARAM.findall(route.path)
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True,
             "schema": {"type": "integer"} if f"{{{p}:int}}" in route.path else {"type": "string"}}
            for p in params
        ]
    for query, kind in doc.get("query", {}).items():
        op.setdefault("parameters", []).append(
            {"name": query, "in": "query", "required": False, "schema": {"type": kind}})
    request = doc.get("request")
    if request:
        optional = request.endswith("?")
        name = request.rstrip("?")
        schema: dict[str, Any] = _ref(name)
        if doc.get("batch"):
            # Batch items are checked one by one: an item that does not have
            # the single request's shape gets its own error in ``results``.
            item = {"description": f"one {name}; a malformed item fails alone"}
            schema = {"oneOf": [schema, _obj({"items": {"type": "array", "items": item}},
                                             ["items"])]}
        op["requestBody"] = {"required": not optional,
                             "content": {"application/json": {"schema": schema}}}
    response = doc["response"]
    if response == "text":
        content = {"text/plain": {"schema": {"type": "string"}}}
    else:
        body: dict[str, Any] = _ref(response)
        if doc.get("batch"):
            item = {"oneOf": [body, _ref("Error")]}
            body = {"oneOf": [body, _obj({"results": {"type": "array", "items": item}},
                                         ["results"])]}
        content = {"application/json": {"schema": body}}
    status = str(doc.get("status", 200))
    error = {"description": "An error", "content": {"application/json": {"schema": _ref("Error")}}}
    op["responses"] = {status: {"description": "Success", "content": content}, "default": error}
    for other, name in doc.get("also", {}).items():  # e.g. 202 with a pending approval
        op["responses"][str(other)] = {"description": "Accepted" if other == 202 else "Success",
                                       "content": {"application/json": {"schema": _ref(name)}}}
    if route.permission is None:
        op["security"] = []
    else:
        op["x-permission"] = route.permission
    return op


def document(routes: Iterable[KmsRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _PARAM.sub(lambda m: "{" + m[1] + "}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "kmsframe", "version": __version__,
                 "description": "The kmsframe key management service. Errors are "
                                "{\"error\": {\"code\", \"message\"}} with stable codes."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }

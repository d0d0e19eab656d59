"""OpenAPI schemas of the access-control routes (added to
:data:`kmsframe.http.openapi.SCHEMAS`)."""

from __future__ import annotations

from typing import Any

_OPEN = {"type": "object"}  # bodies with fields that grow over time stay open
_STRINGS = {"type": "array", "items": {"type": "string"}}
_TOTP = {"type": "string", "pattern": "^[0-9]{6,8}$"}


def _obj(properties: dict[str, Any], required: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    props = {n: s if n in required else {"anyOf": [s, {"type": "null"}]}
             for n, s in properties.items()}
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    return out


ACCESS_SCHEMAS: dict[str, Any] = {
    "LoginRequest": _obj({"user": {"type": "string"}, "password": {"type": "string"},
                          "totp": _TOTP}, ["user", "password", "totp"]),
    "Session": _obj({"token": {"type": "string"}, "user": {"type": "string"},
                     "roles": _STRINGS, "expires_at": {"type": "number"}},
                    ["token", "user", "roles", "expires_at"]),
    "Identity": _obj({"id": {"type": "string"}, "kind": {"type": "string"}, "roles": _STRINGS},
                     ["id", "kind", "roles"]),
    "CreateUserRequest": _obj({"name": {"type": "string", "maxLength": 64}}, ["name"]),
    "User": {"type": "object", "properties": {
        "name": {"type": "string"}, "roles": _STRINGS, "status": {"type": "string"}},
        "required": ["name", "roles", "status"]},
    "CreatedUser": {"allOf": [{"$ref": "#/components/schemas/User"}, {
        "type": "object", "properties": {"initial_password": {"type": "string"},
                                         "totp_uri": {"type": "string"}},
        "required": ["initial_password", "totp_uri"]}]},
    "UserList": _obj({"users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}},
                     ["users"]),
    "GrantRoleRequest": _obj({"role": {"type": "string"}, "reason": {"type": "string"}},
                             ["role"]),
    "BindingRequest": _obj({"operations": {"type": "array", "items": {
        "type": "string", "enum": ["encrypt", "decrypt", "rewrap", "datakey", "sign",
                                   "verify", "mac"]}}}, ["operations"]),
    "ConditionsRequest": _obj({"conditions": _OPEN}, ["conditions"]),
    "Approval": {"type": "object", "properties": {
        "id": {"type": "string"}, "operation": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "executing", "executed", "failed",
                                              "rejected", "expired"]},
        "requester": {"type": "string"}, "params": _OPEN,
        "requirements": {"type": "object", "additionalProperties": {"type": "integer"}},
        "approvals": {"type": "array"}, "rejections": {"type": "array"},
        "expires_at": {"type": "number"}},
        "required": ["id", "operation", "status", "requester", "requirements"]},
    "ApprovalList": _obj({"approvals": {"type": "array",
                                        "items": {"$ref": "#/components/schemas/Approval"}}},
                         ["approvals"]),
    "ApproveRequest": _obj({"totp": _TOTP}, ["totp"]),
    "RejectRequest": _obj({"totp": _TOTP, "reason": {"type": "string"}}, ["totp"]),
    "ExportRequest": _obj({"recipient": {"type": "string"},
                           "public_key_pem": {"type": "string"},
                           "version": {"type": "integer", "minimum": 10001, "maximum": 99999},
                           "reason": {"type": "string"}}, ["recipient", "public_key_pem"]),
    "AuditRecords": _obj({"records": {"type": "array", "items": _OPEN}}, ["records"]),
    "AuditVerification": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                          "required": ["ok"]},
}

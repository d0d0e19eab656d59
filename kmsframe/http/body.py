"""Reading request bodies (with a size limit) and checking JSON fields.

The crypto routes read the ASGI body themselves instead of going through
``Request.json()``: one ``receive`` in the common case, ``orjson`` to parse,
and a declared ``Content-Length`` over the limit is refused before a byte of
the body is read.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import Receive, Scope

from .errors import MalformedJson, RequestTooLarge, ValidationFailed

DEFAULT_MAX_BODY = 4 << 20  # 4 MiB: a 1 MiB plaintext in base64 plus a batch's overhead


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise MalformedJson("the Content-Length header is not a number") from None
            if declared > limit:
                raise RequestTooLarge(f"the request body is larger than {limit} bytes")
            break
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise RequestTooLarge(f"the request body is larger than {limit} bytes")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the request body is larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def read_json(scope: Scope, receive: Receive, limit: int, *, empty: Any = None) -> Any:
    """The body parsed as JSON; an empty body is ``empty`` (None: refused)."""
    body = await read_body(scope, receive, limit)
    if not body:
        if empty is not None:
            return empty
        raise MalformedJson("the request body is empty; a JSON object is expected")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedJson() from None


def json_object(value: Any, what: str = "the request body") -> dict[str, Any]:
    if type(value) is not dict:
        raise ValidationFailed(f"{what} must be a JSON object")
    return value


def check_fields(obj: Mapping[str, Any], allowed: frozenset[str], what: str = "the request") -> None:
    if not allowed.issuperset(obj):
        unknown = ", ".join(sorted(set(obj) - allowed))
        raise ValidationFailed(f"{what} has unknown fields: {unknown}")


def string(obj: Mapping[str, Any], field: str, *, required: bool = True,
           default: str | None = None, max_length: int = 1 << 22) -> Any:
    value = obj.get(field)
    if value is None:
        if required:
            raise ValidationFailed(f"'{field}' is required")
        return default
    if type(value) is not str:
        raise ValidationFailed(f"'{field}' must be a string")
    if len(value) > max_length:
        raise ValidationFailed(f"'{field}' is longer than {max_length} characters")
    return value


def integer(obj: Mapping[str, Any], field: str, *, required: bool = True,
            default: int | None = None, minimum: int | None = None,
            maximum: int | None = None) -> Any:
    value = obj.get(field)
    if value is None:
        if required:
            raise ValidationFailed(f"'{field}' is required")
        return default
    if type(value) is float and value.is_integer():
        value = int(value)  # JSON has one number type: 16.0 is the integer 16
    if type(value) is not int:
        raise ValidationFailed(f"'{field}' must be an integer")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValidationFailed(f"'{field}' must be between {minimum} and {maximum}")
    return value


def number(obj: Mapping[str, Any], field: str, *, required: bool = True,
           default: float | None = None, minimum: float = 0.0,
           maximum: float = 1e9) -> Any:
    value = obj.get(field)
    if value is None:
        if required:
            raise ValidationFailed(f"'{field}' is required")
        return default
    if type(value) not in (int, float) or not minimum <= value <= maximum:
        raise ValidationFailed(f"'{field}' must be a number between {minimum} and {maximum}")
    return value


def boolean(obj: Mapping[str, Any], field: str, *, default: bool) -> bool:
    value = obj.get(field, default)
    if type(value) is not bool:
        raise ValidationFailed(f"'{field}' must be true or false")
    return value


def base64_field(obj: Mapping[str, Any], field: str) -> bytes:
    value = obj.get(field)
    if type(value) is not str:
        raise ValidationFailed(f"'{field}' must be a base64 string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"'{field}' is not valid base64") from None


def context_field(obj: Mapping[str, Any], field: str = "context") -> dict[str, str] | None:
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is not dict or not all(type(v) is str for v in value.values()):
        raise ValidationFailed(f"'{field}' must be an object of string values")
    return value


def string_map(obj: Mapping[str, Any], field: str) -> dict[str, str]:
    value = obj.get(field)
    if value is None:
        return {}
    if type(value) is not dict or not all(type(v) is str for v in value.values()):
        raise ValidationFailed(f"'{field}' must be an object of string values")
    return value

"""JSON responses written straight to ASGI ``send`` (orjson, fixed headers)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Send

_JSON = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, body: bytes,
                    extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [_JSON, (b"content-length", b"%d" % len(body))]
    if extra_headers:
        headers += extra_headers
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def json_response(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")

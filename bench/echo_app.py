"""The transport ceiling for bench_http.py: a bare starlette echo endpoint.

Same uvicorn settings as ``kmsframe serve`` (uvloop, httptools, N workers, no
access log, no proxy headers, no server header); it reads the request body and answers a small JSON body of the
same shape as an encrypt response, through a plain starlette function route.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_BODY = b'{"ciphertext":"10001' + b"A" * 120 + b'","version":10001}'


async def echo(request: Request) -> Response:
    await request.body()
    return Response(_BODY, media_type="application/json")


app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])


async def raw(scope, receive, send):  # type: ignore[no-untyped-def]
    """No framework at all: what uvicorn itself costs (for reference)."""
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": _RAW_HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


_RAW_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))]

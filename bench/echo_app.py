"""The transport ceiling for bench_http.py: a bare starlette echo endpoint.

Same uvicorn settings as ``kmsframe serve`` (uvloop, httptools, N workers, no
access log); it reads the request body and answers a small JSON body of the
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

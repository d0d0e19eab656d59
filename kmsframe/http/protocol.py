"""uvicorn's httptools protocol with two additions kmsframe needs.

**One write per response.** uvicorn writes a response's status line and
headers when the app sends ``http.response.start`` and the body when it sends
``http.response.body``: two ``send`` system calls for every small response,
which on loopback cost more than an AES-GCM call. :class:`CoalescingTransport`
collects the writes made during one turn of the event loop and hands them to
the socket together on the next turn (``call_soon``), in order; ``close`` and
``abort`` flush first. Nothing is reordered and nothing waits for more than
one loop turn.

**Mutual TLS identity.** uvicorn does not put the peer certificate in the ASGI
scope. :class:`MutualTlsHttpToolsProtocol` records the SHA-256 fingerprint of
the verified client certificate (``ssl.CERT_REQUIRED`` has already checked it
against the CA) and adds it to every request's scope as
``scope["extensions"]["tls"]["client_cert_sha256"]``; the bearer backend
(:mod:`kmsframe.http.auth`) maps it to the app registered with it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps a transport; writes made in one loop turn leave in one call."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        self._scheduled = False
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class KmsHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]


class MutualTlsHttpToolsProtocol(KmsHttpToolsProtocol):
    _client_tls: dict[str, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._client_tls = {"client_cert_sha256": hashlib.sha256(der).hexdigest()} if der \
            else None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._client_tls is not None:
            self.scope["extensions"] = {"tls": dict(self._client_tls)}  # type: ignore[typeddict-unknown-key]

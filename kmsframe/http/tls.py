"""Mutual TLS: hand the verified client certificate to the app.

uvicorn does not put the peer certificate in the ASGI scope, so
``kmsframe serve --tls-client-ca`` runs this subclass of its httptools
protocol. After the TLS handshake (the certificate is already verified
against the CA: ``ssl.CERT_REQUIRED``) it records the SHA-256 fingerprint of
the client's DER certificate and adds it to every request's scope as
``scope["extensions"]["tls"]["client_cert_sha256"]``. The bearer backend
(:mod:`kmsframe.http.auth`) maps a fingerprint to the app registered with it
when a request carries no ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import hashlib

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class MutualTlsHttpToolsProtocol(HttpToolsProtocol):
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

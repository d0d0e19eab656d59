"""Crypto routes: encrypt, decrypt, rewrap, datakey — one item or a batch.

These are the hot path, so each is a plain ASGI endpoint (no ``Request``
object): read the body once, parse with orjson, call the in-process
:class:`~kmsframe.service.KeyService`, and write the response with fixed
headers. Where the call runs:

* on the event loop when the key is cached and its algorithm does not declare
  the operation slow (an AES-GCM call takes microseconds; a thread hop would
  cost more than the work);
* in the default thread pool when the key is not cached (the call reads the
  store, maybe unwraps in an HSM);
* in the runtime's bounded crypto pool when the algorithm declares the
  operation slow (:func:`kmsframe.providers.slow_operations`: an RSA-4096
  signature takes milliseconds, during which the loop would serve no one).
  A batch goes there as one job: per-item hops measured no better (see
  ``docs/performance.md``).

A body ``{"items": [...]}`` is a batch: each item has the single call's shape
and its result is either the single call's response or
``{"error": {"code", "message"}}``; one bad item fails alone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from time import time
from typing import Any

import orjson
from anyio import to_thread
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from ...authorization import Principal, request_source
from ...errors import KmsError, PayloadTooLarge, PermissionDenied
from ...model import Operation
from ...service import KeyService
from ..body import base64_field, boolean, context_field, integer, read_json, string
from ..errors import ValidationFailed, error_object, status_for
from ..responses import send_json
from ..routing import KmsRoute
from ..runtime import Runtime

_a2b = binascii.a2b_base64
OneCall = Callable[[KeyService, str, dict[str, Any], Principal], dict[str, Any]]

_ENCRYPT = frozenset({"plaintext", "context"})
_DECRYPT = frozenset({"ciphertext", "context"})
_REWRAP = frozenset({"ciphertext", "context", "new_context"})
_DATAKEY = frozenset({"context", "size", "include_plaintext"})


def _fields(obj: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if type(obj) is not dict:
        raise ValidationFailed("the request must be a JSON object")
    if not allowed.issuperset(obj):
        unknown = ", ".join(sorted(set(obj) - allowed))
        raise ValidationFailed(f"unknown fields: {unknown}")
    return obj


def encrypt_one(service: KeyService, name: str, obj: dict[str, Any],
                principal: Principal) -> dict[str, Any]:
    _fields(obj, _ENCRYPT)
    result = service.encrypt(name, base64_field(obj, "plaintext"), context_field(obj),
                             principal=principal)
    return {"ciphertext": result.ciphertext, "version": result.version}


def decrypt_one(service: KeyService, name: str, obj: dict[str, Any],
                principal: Principal) -> dict[str, Any]:
    _fields(obj, _DECRYPT)
    plaintext = service.decrypt(name, string(obj, "ciphertext"), context_field(obj),
                                principal=principal)
    return {"plaintext": base64.b64encode(plaintext).decode("ascii")}


def rewrap_one(service: KeyService, name: str, obj: dict[str, Any],
               principal: Principal) -> dict[str, Any]:
    _fields(obj, _REWRAP)
    result = service.rewrap(name, string(obj, "ciphertext"), context_field(obj),
                            new_context=context_field(obj, "new_context"), principal=principal)
    return {"ciphertext": result.ciphertext, "version": result.version}


def datakey_one(service: KeyService, name: str, obj: dict[str, Any],
                principal: Principal) -> dict[str, Any]:
    _fields(obj, _DATAKEY)
    key = service.generate_data_key(
        name, context_field(obj), size=integer(obj, "size", required=False, minimum=16, maximum=64),
        include_plaintext=boolean(obj, "include_plaintext", default=True), principal=principal)
    out: dict[str, Any] = {"ciphertext": key.ciphertext, "version": key.version}
    if key.plaintext is not None:
        # The data key is what the caller asked for; it is never logged.
        out["plaintext"] = base64.b64encode(key.plaintext.reveal()).decode("ascii")
    return out


def encrypt_plain(service: KeyService, name: str, item: Any,
                  principal: Principal) -> dict[str, Any] | None:
    """Batch shortcut for the common item ``{"plaintext": b64}``; None when the
    item has another shape or fails (the full :func:`encrypt_one` then runs
    and reports the error precisely)."""
    if type(item) is not dict or len(item) != 1:
        return None
    plaintext = item.get("plaintext")
    if type(plaintext) is not str:
        return None
    try:
        result = service.encrypt(name, _a2b(plaintext, strict_mode=True), None,
                                 principal=principal)
    except (binascii.Error, ValueError, KmsError):
        return None
    return {"ciphertext": result.ciphertext, "version": result.version}


class CryptoEndpoint:
    """One crypto operation as an ASGI app; handles single calls and batches.

    Every call is audited (who, which key and version, outcome, source) in
    the audit log's batched lane — a batch as one record that names each
    item's outcome (:class:`BatchTally`); while the log cannot be written the
    endpoint refuses with 503 rather than work unrecorded.
    """

    def __init__(self, runtime: Runtime, one: OneCall, op: str,
                 shortcut: Callable[[KeyService, str, Any, Principal],
                                    dict[str, Any] | None] | None = None) -> None:
        self.runtime = runtime
        self.one = one
        self.op = op
        self.shortcut = shortcut
        self.limit = runtime.settings.max_body_bytes
        # Checking a MAC is the key service's "verify" operation (model.Operation).
        self.operation = Operation.VERIFY if op == "verify-mac" else Operation(op)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_json(scope, receive, self.limit)
        name = scope["path_params"]["name"]
        principal = scope["user"].principal
        service = self.runtime.service
        self.runtime.audit.check_writable()
        client = scope.get("client")
        source = client[0] if client else None
        batch = type(body) is dict and "items" in body
        token = request_source.set(source)  # for per-key source-range conditions
        try:
            if not service.is_warm(name):
                # A cold cache means a store read (and an HSM unwrap): off the
                # loop, so one slow or unreachable store cannot stall the worker.
                out = await run_in_threadpool(self.serve, batch, service, name, body,
                                              principal, source)
            elif (limiter := self.runtime.crypto_limiter) is not None \
                    and service.is_slow(name, self.operation, batch):
                out = await to_thread.run_sync(self.serve, batch, service, name, body,
                                               principal, source, limiter=limiter)
            else:
                out = self.serve(batch, service, name, body, principal, source)
        finally:
            request_source.reset(token)
        await send_json(send, 200, orjson.dumps(out))

    def serve(self, batch: bool, service: KeyService, name: str, body: Any,
              principal: Principal, source: str | None) -> dict[str, Any]:
        actor = str(principal)
        if batch:
            return self.batch(service, name, body, principal, actor, source)
        return self.audited(actor, source, service, name, body, principal)

    def audited(self, actor: str, source: str | None, service: KeyService, name: str,
                obj: Any, principal: Principal) -> dict[str, Any]:
        record = self.runtime.audit.record_crypto
        try:
            out = self.one(service, name, obj, principal)
        except KmsError as exc:
            record(time(), actor, self.op, exc.code, name, None, source,
                   exc.log_detail if isinstance(exc, PermissionDenied) else None)
            raise
        record(time(), actor, self.op, "ok", name, out.get("version"), source, None)
        return out

    def batch(self, service: KeyService, name: str, body: dict[str, Any],
              principal: Principal, actor: str, source: str | None) -> dict[str, Any]:
        if len(body) != 1:
            raise ValidationFailed("a batch request has only 'items'")
        items = body["items"]
        if type(items) is not list:
            raise ValidationFailed("'items' must be a list")
        if len(items) > service.settings.max_batch_items:
            raise PayloadTooLarge(f"a batch holds at most {service.settings.max_batch_items} items")
        shortcut, one = self.shortcut, self.one
        results: list[dict[str, Any]] = []
        tally = BatchTally()
        try:
            for index, item in enumerate(items):
                done = shortcut(service, name, item, principal) if shortcut is not None else None
                if done is None:
                    try:
                        done = one(service, name, item, principal)
                    except KmsError as exc:
                        if status_for(exc) >= 500:
                            tally.abort(exc.code)
                            raise  # the deployment is failing, not this item
                        tally.failed(index, exc)
                        results.append({"error": error_object(exc)})
                        continue
                tally.ok(done.get("version"))
                results.append(done)
        finally:
            # One record for the whole batch, naming every item's outcome.
            version, outcome, detail = tally.summary(len(items))
            self.runtime.audit.record_crypto(time(), actor, self.op, outcome, name, version,
                                             source, detail)
        for code, n in tally.error_counts().items():
            self.runtime.metrics.count_error(code, n)
        return {"results": results}


class BatchTally:
    """What happened to each item of a batch, for its single audit record.

    The record keeps who, which key, the operation and the source like any
    crypto record; its ``detail`` lists the versions used and, for every
    item that failed, its index and error code (and a denial's reason), e.g.
    ``batch of 100: ok 98 (10001×60, 10002×38); decryption_failed at 17, 45``.
    """

    __slots__ = ("_ok", "_versions", "_failures", "_aborted")

    def __init__(self) -> None:
        self._ok = 0
        self._versions: dict[Any, int] = {}
        self._failures: dict[str, list[str]] = {}
        self._aborted: str | None = None

    def ok(self, version: Any) -> None:
        self._ok += 1
        self._versions[version] = self._versions.get(version, 0) + 1

    def failed(self, index: int, exc: KmsError) -> None:
        reason = f" ({exc.log_detail})" if isinstance(exc, PermissionDenied) and exc.log_detail else ""
        self._failures.setdefault(exc.code, []).append(f"{index}{reason}")

    def abort(self, code: str) -> None:
        self._aborted = code

    def error_counts(self) -> dict[str, int]:
        return {code: len(at) for code, at in self._failures.items()}

    def summary(self, size: int) -> tuple[int | None, str, str]:
        versions = [v for v in self._versions if v is not None]
        parts = [f"batch of {size}: ok {self._ok}"]
        if versions:
            parts[0] += " (" + ", ".join(f"{v}×{self._versions[v]}" for v in sorted(versions)) + ")"
        parts += [f"{code} at {', '.join(at)}" for code, at in self._failures.items()]
        if self._aborted is not None:
            parts.append(f"stopped by {self._aborted} after {self._ok + sum(map(len, self._failures.values()))} items")
        if self._aborted is not None:
            outcome = self._aborted
        elif not self._failures:
            outcome = "ok"
        else:
            outcome = "partial" if self._ok else "failed"
        return (versions[0] if len(versions) == 1 else None), outcome, "; ".join(parts)


def crypto_route(runtime: Runtime, op: str, one: OneCall, doc: dict[str, Any], *,
                 shortcut: Any = None, permission: str | None = None) -> KmsRoute:
    """``POST /v1/keys/{name}/<op>``: one call or a batch, audited (see :class:`CryptoEndpoint`)."""
    return KmsRoute(f"/v1/keys/{{name}}/{op}", CryptoEndpoint(runtime, one, op, shortcut),
                    method="POST", permission=permission or f"crypto.{op}",
                    name=f"crypto.{op}", doc=doc)


def routes(runtime: Runtime) -> list[KmsRoute]:
    def route(op: str, one: OneCall, doc: dict[str, Any], shortcut: Any = None) -> KmsRoute:
        return crypto_route(runtime, op, one, doc, shortcut=shortcut)

    return [
        route("encrypt", encrypt_one, shortcut=encrypt_plain, doc={
            "summary": "Encrypt with the key's primary version",
            "request": "EncryptRequest", "response": "EncryptResponse", "batch": True}),
        route("decrypt", decrypt_one, {
            "summary": "Decrypt a ciphertext made by encrypt (failures never say why)",
            "request": "DecryptRequest", "response": "DecryptResponse", "batch": True}),
        route("rewrap", rewrap_one, {
            "summary": "Re-encrypt a ciphertext under the primary version (密钥升级)",
            "request": "RewrapRequest", "response": "EncryptResponse", "batch": True}),
        route("datakey", datakey_one, {
            "summary": "Generate a data key, returned encrypted (and in the clear)",
            "request": "DataKeyRequest", "response": "DataKeyResponse", "batch": True}),
    ]

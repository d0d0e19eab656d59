"""Apps: the callers of the crypto API, each with a bearer token shown once.

An app is a stored document (kind ``"app"``, format 1)::

    {"format": 1, "id": "<16 hex>", "name": "...", "roles": ["app"],
     "status": "active" | "revoked", "created_at": <unix time>,
     "created_by": "<principal>", "token_sha256": "<hex>"}

The token is ``kmsf_<id>_<43 url-safe characters>`` (256 random bits). Only
its SHA-256 is stored: the token is high-entropy, so a fast hash is enough
(nobody can brute-force 2^256), and a lookup stays cheap on every request.
The presented token's hash is compared in constant time.

Authentication happens on every request, so :class:`AppRegistry` keeps a map
of token hash → :class:`Principal`. It is dropped whenever the deployment's
change signal moves (every app or key change in any worker bumps it), so a
revoked token stops working in every worker with the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _random
import time
from collections.abc import Callable
from typing import Any

import attrs

from .authorization import SYSTEM, Principal
from .errors import AlreadyExists, IntegrityError, InvalidRequest, NotFound
from .providers import Storage
from .secrets import Secret
from .service import ChangeSignal

APP_FORMAT = 1
KIND_APP = "app"
TOKEN_PREFIX = "kmsf_"
ROOT_ID = "root"
ROOT = Principal(id=ROOT_ID, kind="user", roles=frozenset({"admin"}))
DEFAULT_APP_ROLES = ("app",)
_TOKEN = re.compile(r"kmsf_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}")
_MAX_CACHED = 100_000


class AppNotFound(NotFound):
    code = "app_not_found"
    default_message = "no such app"


@attrs.frozen(slots=True)
class App:
    """A registered caller. Holds only the hash of its token."""

    id: str
    name: str
    roles: tuple[str, ...]
    status: str
    created_at: float
    created_by: str
    token_sha256: str = attrs.field(repr=False)
    # SHA-256 of the DER client certificate that also identifies this app
    # (mutual TLS); None: bearer token only.
    client_cert_sha256: str | None = None
    revision: int = attrs.field(default=0, eq=False)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def principal(self) -> Principal:
        return Principal(id=self.id, kind="app", roles=frozenset(self.roles))

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the token hash."""
        return {"id": self.id, "name": self.name, "roles": list(self.roles),
                "status": self.status, "created_at": self.created_at,
                "created_by": self.created_by, "client_cert_sha256": self.client_cert_sha256}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _cache_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def app_to_document(app: App) -> dict[str, Any]:
    return {"format": APP_FORMAT, "id": app.id, "name": app.name, "roles": list(app.roles),
            "status": app.status, "created_at": app.created_at, "created_by": app.created_by,
            "token_sha256": app.token_sha256, "client_cert_sha256": app.client_cert_sha256}


def app_from_document(doc: Any, revision: int) -> App:
    if doc.get("format") != APP_FORMAT:
        raise IntegrityError(log_detail=f"app record format {doc.get('format')!r} is not supported")
    try:
        return App(id=doc["id"], name=doc["name"], roles=tuple(doc["roles"]),
                   status=doc["status"], created_at=doc["created_at"],
                   created_by=doc["created_by"], token_sha256=doc["token_sha256"],
                   client_cert_sha256=doc.get("client_cert_sha256"), revision=revision)
    except (KeyError, TypeError) as exc:
        raise IntegrityError(log_detail=f"malformed app record: {exc!r}") from None


class AppRegistry:
    """Create, list, revoke apps, and turn a presented token into a principal."""

    def __init__(self, storage: Storage, signal: ChangeSignal, *,
                 root_token: Secret | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.signal = signal
        self.clock = clock
        self._root_hash = None if root_token is None else \
            hashlib.sha256(root_token.reveal()).digest()
        # SHA-256 of the token → principal: no token is kept in memory.
        self._cache: dict[bytes, Principal] = {}
        self._seen = signal.current()

    # -- management ----------------------------------------------------------

    def create(self, name: str, *, roles: tuple[str, ...] = DEFAULT_APP_ROLES,
               client_cert_sha256: str | None = None,
               actor: Principal = SYSTEM) -> tuple[App, Secret]:
        """A new app and its token; the token is returned here and never again."""
        if client_cert_sha256 is not None:
            if not isinstance(client_cert_sha256, str) or not _FINGERPRINT.fullmatch(
                    client_cert_sha256.lower()):
                raise InvalidRequest("client_cert_sha256 is 64 hex digits (SHA-256 of the DER "
                                     "certificate)")
            client_cert_sha256 = client_cert_sha256.lower()
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidRequest("app names are 1-128 letters, digits, spaces, '.', '_' or '-'")
        if not all(isinstance(r, str) and r for r in roles):
            raise InvalidRequest("roles must be non-empty strings")
        if any(a.name == name and a.active for a in self.list()):
            raise AlreadyExists(f"an app named {name!r} already exists")
        app_id = _random.token_hex(8)
        token = f"{TOKEN_PREFIX}{app_id}_{_random.token_urlsafe(32)}"
        app = App(id=app_id, name=name, roles=tuple(roles), status="active",
                  created_at=self.clock(), created_by=str(actor), token_sha256=token_hash(token),
                  client_cert_sha256=client_cert_sha256)
        revision = self.storage.put(KIND_APP, app_id, app_to_document(app), expected_revision=0)
        self.signal.bump()
        return attrs.evolve(app, revision=revision), Secret.from_text(token)

    def get(self, app_id: str) -> App:
        doc = self.storage.get(KIND_APP, app_id) if isinstance(app_id, str) else None
        if doc is None:
            raise AppNotFound(f"no app with id {app_id!r}")
        return app_from_document(doc.data, doc.revision)

    def list(self) -> list[App]:
        return [app_from_document(d.data, d.revision) for d in self.storage.list(KIND_APP)]

    def revoke(self, app_id: str, *, actor: Principal = SYSTEM) -> App:
        """Revoke an app's token for good (the record stays, for audit)."""
        app = self.get(app_id)
        if not app.active:
            return app
        revoked = attrs.evolve(app, status="revoked")
        revision = self.storage.put(KIND_APP, app_id, app_to_document(revoked),
                                    expected_revision=app.revision)
        self.signal.bump()
        return attrs.evolve(revoked, revision=revision)

    # -- authentication --------------------------------------------------------

    def _refresh(self) -> None:
        """Forget every cached answer once anything changed in any worker."""
        change = self.signal.current()
        if change != self._seen:
            self._cache.clear()
            self._seen = change

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(known, principal) from memory only: the per-request fast path."""
        self._refresh()
        digest = _cache_key(token)
        principal = self._cache.get(digest)
        if principal is not None:
            return True, principal
        if self._root_hash is not None and hmac.compare_digest(digest, self._root_hash):
            self._cache[digest] = ROOT
            return True, ROOT
        return False, None

    def authenticate_certificate(self, fingerprint: str) -> Principal | None:
        """The active app registered with this client-certificate fingerprint."""
        key = b"cert:" + fingerprint.encode("ascii")
        self._refresh()
        principal = self._cache.get(key)
        if principal is not None:
            return principal
        for app in self.list():
            if app.active and app.client_cert_sha256 is not None and hmac.compare_digest(
                    app.client_cert_sha256, fingerprint):
                self._cache[key] = app.principal
                return app.principal
        return None

    def authenticate(self, token: str) -> Principal | None:
        """The principal a token stands for, or None (unknown, malformed, revoked)."""
        known, principal = self.cached(token)
        if known:
            return principal
        principal = None
        match = _TOKEN.fullmatch(token)
        if match is not None:
            doc = self.storage.get(KIND_APP, match[1])
            if doc is not None:
                app = app_from_document(doc.data, doc.revision)
                if app.active and hmac.compare_digest(app.token_sha256, token_hash(token)):
                    principal = app.principal
        if principal is not None:
            # Only well-formed tokens of real apps are remembered, so a flood
            # of made-up tokens cannot grow the map.
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[_cache_key(token)] = principal
        return principal

"""Sessions of logged-in human users: expiring, revocable bearer tokens.

A session token is ``kms_s_`` + 32 random bytes (base64url). Only its SHA-256
is stored (kind ``"session"``, id = hex digest): the token has 256 bits of
entropy, so a fast hash is enough and a stolen database yields no usable
token. Stored record (``format`` 1)::

    {"format": 1, "user": ..., "created_at": ..., "expires_at": ...,
     "idle_expires_at": ..., "source": ...}

Every use re-reads the user, so disabling a user or removing a role takes
effect on their very next request; ``revoke`` deletes the record.
"""

from __future__ import annotations

import hashlib
import secrets as _random
import time
from collections.abc import Callable
from typing import Any

import attrs

from ..authorization import Principal
from ..errors import ConcurrentModification, NotFound, Unauthenticated
from ..providers import Storage
from .users import UserDirectory

SESSION_FORMAT = 1
KIND_SESSION = "session"
TOKEN_PREFIX = "kms_s_"


@attrs.frozen(slots=True)
class SessionPolicy:
    lifetime_seconds: float = 8 * 3600.0
    idle_seconds: float = 30 * 60.0


@attrs.frozen(slots=True)
class Session:
    id: str  # the token's SHA-256, hex; never the token itself
    user: str
    created_at: float
    expires_at: float


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    def __init__(self, storage: Storage, users: UserDirectory,
                 policy: SessionPolicy = SessionPolicy(),
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.users = users
        self.policy = policy
        self.clock = clock

    def open(self, user: str, source: str | None = None) -> tuple[str, Session]:
        """A new session for ``user`` (already authenticated): token, session."""
        token = TOKEN_PREFIX + _random.token_urlsafe(32)
        now = self.clock()
        doc: dict[str, Any] = {
            "format": SESSION_FORMAT, "user": user, "created_at": now,
            "expires_at": now + self.policy.lifetime_seconds,
            "idle_expires_at": now + self.policy.idle_seconds, "source": source,
        }
        sid = token_id(token)
        self.storage.put(KIND_SESSION, sid, doc, expected_revision=0)
        return token, Session(id=sid, user=user, created_at=now, expires_at=doc["expires_at"])

    def principal(self, token: str) -> Principal:
        """The user behind a valid session token, with their current roles."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            raise Unauthenticated(log_detail="not a session token")
        sid = token_id(token)
        stored = self.storage.get(KIND_SESSION, sid)
        now = self.clock()
        if stored is None or stored.data.get("format") != SESSION_FORMAT:
            raise Unauthenticated("the session is not valid", log_detail="unknown session")
        data = stored.data
        if now >= data["expires_at"] or now >= data["idle_expires_at"]:
            self._drop(sid, stored.revision)
            raise Unauthenticated("the session has expired", log_detail="session expired")
        user = self.users.find(data["user"])
        if user is None or not user.active:
            self._drop(sid, stored.revision)
            raise Unauthenticated("the session is not valid",
                                  log_detail=f"user {data['user']!r} is gone or disabled")
        # Slide the idle deadline at most once a minute: a write per request
        # would make every admin call a store write.
        idle = now + self.policy.idle_seconds
        if idle - data["idle_expires_at"] > 60:
            try:
                self.storage.put(KIND_SESSION, sid, {**data, "idle_expires_at": idle},
                                 expected_revision=stored.revision)
            except (ConcurrentModification, NotFound):  # a concurrent slide or logout won
                pass
        return user.principal()

    def revoke(self, token: str) -> None:
        """Log out: the token stops working at once."""
        sid = token_id(token)
        stored = self.storage.get(KIND_SESSION, sid)
        if stored is None:
            raise NotFound("no such session")
        self._drop(sid, stored.revision)

    def revoke_user(self, user: str) -> int:
        """Revoke every session of ``user`` (when disabled); returns how many."""
        count = 0
        for doc in self.storage.list(KIND_SESSION):
            if doc.data.get("user") == user:
                self._drop(doc.id, doc.revision)
                count += 1
        return count

    def _drop(self, sid: str, revision: int) -> None:
        try:
            self.storage.delete(KIND_SESSION, sid, expected_revision=revision)
        except (ConcurrentModification, NotFound):  # already being dropped elsewhere
            pass

"""Human users: password (Argon2id) + TOTP, roles, and their stored form.

Stored record (kind ``"user"``, id = user name, ``format`` 1)::

    {"format": 1, "name": ..., "roles": [...], "status": "active"|"disabled",
     "password": "<argon2id PHC string>",
     "totp": {"hsm": ..., "mk": ..., "blob": b64},   # seed wrapped by the MK
     "totp_last_step": int, "failed_logins": int, "locked_until": float|null,
     "created_at": float, "changed_at": float}

The password is only hashed. The TOTP seed cannot be hashed (the server must
compute codes from it), so it is wrapped by the HSM's master key like a
working key, with associated data naming the user, and unwrapped only for the
moment of a check.
"""

from __future__ import annotations

import base64
import json
import secrets as _random
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..authorization import Principal
from ..errors import (
    AlreadyExists,
    ConcurrentModification,
    IntegrityError,
    InvalidRequest,
    NotFound,
    Unauthenticated,
)
from ..model import WrappedKey
from ..providers import HsmBackend, Storage
from ..secrets import KeyMaterial
from .passwords import Passwords
from .roles import check_roles
from .totp import Totp, TotpParameters

USER_FORMAT = 1
KIND_USER = "user"
ACTIVE = "active"
DISABLED = "disabled"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.@")


@attrs.frozen(slots=True)
class User:
    name: str
    roles: frozenset[str]
    status: str
    password_hash: str = attrs.field(repr=False)
    totp_wrapped: WrappedKey = attrs.field(repr=False)
    totp_last_step: int = -1
    failed_logins: int = 0
    locked_until: float | None = None
    created_at: float = 0.0
    changed_at: float = 0.0
    revision: int = attrs.field(default=0, eq=False)

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def principal(self) -> Principal:
        return Principal(id=self.name, kind="user", roles=self.roles)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, with no secret (no hash, no seed)."""
        return {"name": self.name, "roles": sorted(self.roles), "status": self.status,
                "locked_until": self.locked_until, "created_at": self.created_at,
                "changed_at": self.changed_at}


def _to_doc(u: User) -> dict[str, Any]:
    return {
        "format": USER_FORMAT, "name": u.name, "roles": sorted(u.roles), "status": u.status,
        "password": u.password_hash,
        "totp": {"hsm": u.totp_wrapped.hsm, "mk": u.totp_wrapped.master_key_id,
                 "blob": base64.b64encode(u.totp_wrapped.blob).decode("ascii")},
        "totp_last_step": u.totp_last_step, "failed_logins": u.failed_logins,
        "locked_until": u.locked_until, "created_at": u.created_at, "changed_at": u.changed_at,
    }


def _from_doc(d: Mapping[str, Any], revision: int) -> User:
    if d.get("format") != USER_FORMAT:
        raise IntegrityError(log_detail=f"user record format {d.get('format')!r} is not supported")
    try:
        t = d["totp"]
        return User(
            name=d["name"], roles=frozenset(d["roles"]), status=d["status"],
            password_hash=d["password"],
            totp_wrapped=WrappedKey(hsm=t["hsm"], master_key_id=t["mk"],
                                    blob=base64.b64decode(t["blob"])),
            totp_last_step=d["totp_last_step"], failed_logins=d["failed_logins"],
            locked_until=d.get("locked_until"), created_at=d["created_at"],
            changed_at=d["changed_at"], revision=revision)
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(log_detail=f"malformed user record: {exc!r}") from None


def _totp_aad(name: str) -> bytes:
    return json.dumps({"totp": 1, "user": name}, sort_keys=True, separators=(",", ":")).encode()


@attrs.frozen(slots=True)
class LoginPolicy:
    max_failed_logins: int = 5
    lockout_seconds: float = 300.0


class UserDirectory:
    """Create users, check their credentials, change their roles and status."""

    def __init__(self, storage: Storage, hsm: HsmBackend, passwords: Passwords, *,
                 totp: TotpParameters = TotpParameters(), login: LoginPolicy = LoginPolicy(),
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.hsm = hsm
        self.passwords = passwords
        self.totp_params = totp
        self.login_policy = login
        self.clock = clock

    # -- reading -----------------------------------------------------------------

    def get(self, name: str) -> User:
        doc = self.storage.get(KIND_USER, name)
        if doc is None:
            raise NotFound(f"no user named {name!r}")
        return _from_doc(doc.data, doc.revision)

    def find(self, name: str) -> User | None:
        try:
            return self.get(name)
        except NotFound:
            return None

    def list(self) -> list[User]:
        return [_from_doc(d.data, d.revision) for d in self.storage.list(KIND_USER)]

    # -- changing ----------------------------------------------------------------

    def create(self, name: str, password: str, roles: frozenset[str] = frozenset()
               ) -> tuple[User, str]:
        """Create a user; returns it and the TOTP provisioning URI (show once)."""
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
            raise InvalidRequest("user names are 1-64 lower-case letters, digits, '-_.@'")
        roles = check_roles(roles)
        seed = KeyMaterial(self.hsm.random(20 if self.totp_params.digest == "sha1" else 32))
        now = self.clock()
        user = User(name=name, roles=roles, status=ACTIVE,
                    password_hash=self.passwords.hash(password),
                    totp_wrapped=self.hsm.wrap(seed, _totp_aad(name)),
                    created_at=now, changed_at=now)
        try:
            revision = self.storage.put(KIND_USER, name, _to_doc(user), expected_revision=0)
        except AlreadyExists:
            raise AlreadyExists(f"user {name!r} already exists") from None
        uri = Totp(seed.reveal(), self.totp_params).provisioning_uri(name)
        return attrs.evolve(user, revision=revision), uri

    def update(self, name: str, change: Callable[[User], User]) -> User:
        for _ in range(20):
            current = self.get(name)
            new = attrs.evolve(change(current), changed_at=self.clock())
            try:
                revision = self.storage.put(KIND_USER, name, _to_doc(new),
                                            expected_revision=current.revision)
            except ConcurrentModification:
                continue
            return attrs.evolve(new, revision=revision)
        raise ConcurrentModification(f"user {name!r} is being changed by others; retry")

    def set_roles(self, name: str, roles: frozenset[str]) -> User:
        roles = check_roles(roles)
        return self.update(name, lambda u: attrs.evolve(u, roles=roles))

    def grant(self, name: str, role: str) -> User:
        check_roles({role})
        return self.update(name, lambda u: attrs.evolve(u, roles=u.roles | {role}))

    def revoke_role(self, name: str, role: str) -> User:
        return self.update(name, lambda u: attrs.evolve(u, roles=u.roles - {role}))

    def disable(self, name: str) -> User:
        return self.update(name, lambda u: attrs.evolve(u, status=DISABLED))

    def enable(self, name: str) -> User:
        return self.update(name, lambda u: attrs.evolve(
            u, status=ACTIVE, failed_logins=0, locked_until=None))

    def set_password(self, name: str, password: str) -> User:
        new_hash = self.passwords.hash(password)
        return self.update(name, lambda u: attrs.evolve(u, password_hash=new_hash))

    # -- checking credentials ------------------------------------------------------

    def authenticate(self, name: str, password: str, code: str) -> User:
        """Password and TOTP code → the user; any failure → one vague error.

        Failures count towards a temporary lockout; the error never says
        which factor was wrong or whether the user exists.
        """
        user = self.find(name) if isinstance(name, str) else None
        password_ok = self.passwords.verify(user.password_hash if user else None, password)
        now = self.clock()
        if user is None:
            raise Unauthenticated("wrong user name, password or code",
                                  log_detail=f"login for unknown user {name!r}")
        if user.locked_until is not None and user.locked_until > now:
            raise Unauthenticated("wrong user name, password or code",
                                  log_detail=f"user {name!r} is locked out")
        step = self._check_code(user, code, now) if password_ok else None
        if not user.active or step is None:
            self._failed(user, now)
            why = "disabled" if not user.active else (
                "wrong password" if not password_ok else "wrong or reused TOTP code")
            raise Unauthenticated("wrong user name, password or code",
                                  log_detail=f"login for {name!r} failed: {why}")
        rehash = self.passwords.hash(password) if self.passwords.needs_rehash(
            user.password_hash) else None
        return self.update(name, lambda u: attrs.evolve(
            u, totp_last_step=_fresh(u, step), failed_logins=0, locked_until=None,
            password_hash=rehash or u.password_hash))

    def confirm_second_factor(self, name: str, code: str) -> User:
        """Re-check a user's TOTP (an approver re-confirming); codes never reuse."""
        user = self.get(name)
        now = self.clock()
        if not user.active:
            raise Unauthenticated("the second factor was not accepted",
                                  log_detail=f"user {name!r} is disabled")
        step = self._check_code(user, code, now)
        if step is None:
            raise Unauthenticated("the second factor was not accepted",
                                  log_detail=f"wrong or reused TOTP code for {name!r}")
        return self.update(name, lambda u: attrs.evolve(u, totp_last_step=_fresh(u, step)))

    def _check_code(self, user: User, code: str, now: float) -> int | None:
        seed = self.hsm.unwrap(user.totp_wrapped, _totp_aad(user.name))
        return Totp(seed.reveal(), self.totp_params).verify(code, now,
                                                             after_step=user.totp_last_step)

    def _failed(self, user: User, now: float) -> None:
        policy = self.login_policy

        def change(u: User) -> User:
            failed = u.failed_logins + 1
            locked = now + policy.lockout_seconds if failed >= policy.max_failed_logins else None
            return attrs.evolve(u, failed_logins=0 if locked else failed,
                                locked_until=locked or u.locked_until)

        self.update(user.name, change)

    def totp_of(self, name: str) -> Totp:
        """The user's TOTP generator (enrolment checks and tests)."""
        user = self.get(name)
        return Totp(self.hsm.unwrap(user.totp_wrapped, _totp_aad(name)).reveal(),
                    self.totp_params)


def _fresh(user: User, step: int) -> int:
    """``step`` if still unused; a concurrent request may have used it meanwhile."""
    if step <= user.totp_last_step:
        raise Unauthenticated("the second factor was not accepted",
                              log_detail=f"TOTP code for {user.name!r} was already used")
    return step


def new_password() -> str:
    """A random initial password for a bootstrap admin (shown once)."""
    return _random.token_urlsafe(18)

"""The deployment's access control: users, sessions, approvals and audit in one
place, and the audited entry points transports call.

* :meth:`AccessControl.login` / :meth:`logout` — human sessions (audited);
* :meth:`AccessControl.crypto` — every app crypto call goes through here: it
  refuses while the audit log cannot be written (fail closed), runs the call
  and queues an audit record with its outcome (denials included);
* :meth:`AccessControl.manage` — a management call: refused if the audit log
  is down, its denial or failure recorded durably; stored key changes are
  recorded by the key service's ``on_change`` (``key.history[-1]``), so the
  CLI, the scheduler and approved requests are audited the same way;
* :meth:`AccessControl.write_ahead` — the CLI's and the scheduler's changes get
  the same ``started`` / change / outcome records as HTTP management calls.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..approval_executors import BUILTIN_EXECUTORS
from ..approvals import Approvals, rules_from_config
from ..audit.log import AuditLog, AuditSettings
from ..audit.records import STARTED, AuditEvent, current_request_id
from ..audit.sealing import SealingKeys
from ..authorization import Principal, request_source
from ..errors import ConfigurationError, KmsError, PermissionDenied
from ..model import HistoryEntry, Key
from ..plugins import PluginHost
from ..providers import HsmBackend, Storage
from ..service import KeyService
from .passwords import PasswordPolicy, Passwords
from .roles import require
from .sessions import Session, SessionPolicy, SessionStore
from .totp import TotpParameters
from .users import LoginPolicy, User, UserDirectory

if TYPE_CHECKING:
    from ..config import DeploymentConfig
    from ..deployment import Deployment

log = logging.getLogger(__name__)
# Without [[audit.sinks]]: a JSON-lines file in the data directory. Its
# anchors live in the key store, so the log and the evidence against its
# truncation sit in two places (and the file costs less per record).
DEFAULT_SINKS = ({"type": "jsonl"},)
T = TypeVar("T")


@attrs.define(slots=True)
class WriteAhead:
    """One bracketed change: its request id, and the outcome to record."""

    request_id: str
    outcome: str = "ok"


def _settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    known = {"argon2_time_cost", "argon2_memory_kib", "argon2_parallelism", "min_password_length",
             "totp_digits", "totp_digest", "totp_window", "session_seconds",
             "session_idle_seconds", "max_failed_logins", "lockout_seconds"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigurationError(f"[access] has unknown settings: {', '.join(sorted(unknown))}")
    return dict(raw)


class AccessControl:
    def __init__(self, *, users: UserDirectory, sessions: SessionStore, approvals: Approvals,
                 audit: AuditLog, service: KeyService,
                 clock: Callable[[], float] = time.time) -> None:
        self.users = users
        self.sessions = sessions
        self.approvals = approvals
        self.audit = audit
        self.service = service
        self.clock = clock
        service.on_change = self._key_changed

    @classmethod
    def open(cls, config: "DeploymentConfig", plugins: PluginHost, hsm: HsmBackend,
             storage: Storage, service: KeyService) -> "AccessControl":
        raw = _settings(config.access)
        passwords = Passwords(PasswordPolicy(
            time_cost=int(raw.get("argon2_time_cost", 3)),
            memory_cost_kib=int(raw.get("argon2_memory_kib", 65536)),
            parallelism=int(raw.get("argon2_parallelism", 2)),
            min_length=int(raw.get("min_password_length", 12))))
        try:
            totp = TotpParameters(digits=int(raw.get("totp_digits", 6)),
                                  digest=str(raw.get("totp_digest", "sha1")),
                                  window=int(raw.get("totp_window", 1)))
        except ValueError as exc:
            raise ConfigurationError(f"[access] {exc}") from None
        users = UserDirectory(storage, hsm, passwords, totp=totp, login=LoginPolicy(
            max_failed_logins=int(raw.get("max_failed_logins", 5)),
            lockout_seconds=float(raw.get("lockout_seconds", 300))))
        sessions = SessionStore(storage, users, SessionPolicy(
            lifetime_seconds=float(raw.get("session_seconds", 8 * 3600)),
            idle_seconds=float(raw.get("session_idle_seconds", 1800))))
        sinks = [plugins.build_audit_sink({"data_dir": str(config.data_dir), **spec,
                                           "deployment_storage": storage})
                 for spec in (config.audit_sinks or DEFAULT_SINKS)]
        audit = AuditLog(sinks, storage, SealingKeys(storage, hsm),
                         settings=AuditSettings.from_mapping(config.audit))
        approvals = Approvals(storage, users, rules=rules_from_config(config.approvals),
                              audit=audit.record)
        for operation, executor in {**BUILTIN_EXECUTORS, **plugins.approval_executors()}.items():
            approvals.executors[operation] = executor
        audit.start()
        return cls(users=users, sessions=sessions, approvals=approvals, audit=audit,
                   service=service)

    def attach(self, deployment: "Deployment") -> None:
        self.approvals.deployment = deployment

    def close(self) -> None:
        self.audit.close()

    # -- humans ----------------------------------------------------------------------

    def login(self, name: str, password: str, code: str, *,
              source: str | None = None) -> tuple[str, Session, User]:
        """Password + TOTP → a session token (shown once), audited either way."""
        self.audit.check_writable()
        try:
            user = self.users.authenticate(name, password, code)
        except KmsError as exc:
            self.audit.record(AuditEvent(at=self.clock(), actor=f"user:{name}"[:80],
                                         action="login", outcome=exc.code, source=source,
                                         detail=exc.log_detail))
            raise
        token, session = self.sessions.open(user.name, source)
        self.audit.record(AuditEvent(at=self.clock(), actor=f"user:{user.name}",
                                     action="login", source=source))
        return token, session, user

    def logout(self, token: str, principal: Principal, *, source: str | None = None) -> None:
        self.sessions.revoke(token)
        self.audit.record(AuditEvent.of(principal, "logout", at=self.clock(), source=source))

    def principal_for_session(self, token: str) -> Principal:
        return self.sessions.principal(token)

    # -- audited entry points ------------------------------------------------------------

    def crypto(self, principal: Principal, operation: str, key: str,
               call: Callable[[], T], *, source: str | None = None) -> T:
        """Run an app's crypto ``call``; its outcome is audited (batched)."""
        audit = self.audit
        audit.check_writable()
        try:
            result = call()
        except KmsError as exc:
            audit.record_crypto(self.clock(), str(principal), operation, exc.code, key, None,
                                source,
                                exc.log_detail if isinstance(exc, PermissionDenied) else None)
            raise
        audit.record_crypto(self.clock(), str(principal), operation, "ok", key,
                            getattr(result, "version", None), source, None)
        return result

    def manage(self, principal: Principal, permission: str, action: str,
               call: Callable[[], T], *, key: str | None = None, target: str | None = None,
               source: str | None = None, record_success: bool = False) -> T:
        """Run a management ``call`` after checking ``permission``; failures are
        recorded durably. Key changes record themselves (``on_change``); pass
        ``record_success`` for other changes (users, sessions...)."""
        self.audit.check_writable()
        token = request_source.set(source)
        try:
            require(principal, permission)
            result = call()
        except KmsError as exc:
            self.audit.record(AuditEvent(
                at=self.clock(), actor=str(principal), action=action, key=key, target=target,
                outcome=exc.code, source=source, detail=exc.log_detail))
            raise
        finally:
            request_source.reset(token)
        if record_success:
            self.audit.record(AuditEvent(at=self.clock(), actor=str(principal), action=action,
                                         key=key, target=target, source=source))
        return result

    @contextmanager
    def write_ahead(self, actor: Principal | str, action: str, *, key: str | None = None,
                    target: str | None = None, detail: str | None = None
                    ) -> Iterator[WriteAhead]:
        """Bracket a change made outside HTTP (the CLI, the scheduler) as the HTTP
        management calls are: a durable ``started`` record first — if it cannot
        be written, nothing runs — then the change, whose key records carry the
        same request id, then the outcome (``ok``, the error's code, or what the
        body set on the yielded :class:`WriteAhead`)."""
        request_id = secrets.token_hex(8)

        def event(outcome: str) -> AuditEvent:
            return AuditEvent(at=self.clock(), actor=str(actor), action=action,
                              outcome=outcome, key=key, target=target, detail=detail,
                              request_id=request_id)

        self.audit.record(event(STARTED), seal=False)  # raises: nothing has run
        token = current_request_id.set(request_id)
        outcome = "internal_error"
        try:
            note = WriteAhead(request_id)
            yield note
            outcome = note.outcome
        except KmsError as exc:
            outcome = exc.code
            raise
        finally:
            current_request_id.reset(token)
            self.audit.record(event(outcome))

    # -- key service callbacks ------------------------------------------------------------

    def _key_changed(self, key: Key, entries: Sequence[HistoryEntry]) -> None:
        """Every history entry a stored key change added, as one audit record each."""
        source, request_id = request_source.get(), current_request_id.get()
        # Durable before the management call returns.
        self.audit.record_all([AuditEvent(at=h.at, actor=h.actor, action=h.action, key=key.name,
                                          version=h.version, source=source, detail=h.reason,
                                          request_id=request_id)
                               for h in entries])

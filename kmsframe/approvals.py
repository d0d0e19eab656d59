"""Dual control: sensitive operations run only after a quorum approves.

A sensitive operation (master-key generate/rotate/backup/restore, working-key
export, key destruction, rollback, raising the minimum decryption version,
role grants) is *submitted* as a pending request. It runs — once, through the
executor registered for its operation — only after enough distinct
approvers holding the rule's roles have approved, each re-confirming their
TOTP second factor. The default for master-key operations is the article's
"3 admins + 1 operator": three security admins and one operator.

Rules of the quorum:

* the requester cannot approve their own request;
* a user counts once, and fills one role slot (a user holding two roles is
  matched to the slot that makes the quorum, never both);
* an approval counts only while its approver is active and still holds a
  role the rule needs — disabling an approver or revoking the role drops it;
* an approver needs one of the rule's roles when approving (else denied);
* any eligible approver (or the requester) can reject: the request is dead;
* requests expire after the rule's ``ttl_seconds``.

Stored record (kind ``"approval"``, id = request id, ``format`` 1)::

    {"format": 1, "id", "operation", "params", "requester", "reason",
     "created_at", "expires_at", "status", "requirements": [[role, count]...],
     "approvals": [{"user", "at"}], "rejections": [{"user", "at", "reason"}],
     "result", "error", "finished_at"}

``status``: pending → executing → executed | failed; pending → rejected |
expired. Each transition is a compare-and-swap, so a request executes at
most once even when approvals race in several workers.
"""

from __future__ import annotations

import secrets as _random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .access.roles import (
    KEY_ADMIN,
    OPERATOR,
    PERMISSIONS,
    SECURITY_ADMIN,
    SYSTEM_ADMIN,
    allowed,
    check_roles,
    permission_for,
)
from .access.users import UserDirectory
from .audit.records import AuditEvent
from .authorization import Principal
from .errors import (
    ConcurrentModification,
    ConfigurationError,
    Conflict,
    IntegrityError,
    InvalidRequest,
    KmsError,
    NotFound,
    PermissionDenied,
)
from .providers import Storage

if TYPE_CHECKING:
    from .deployment import Deployment

APPROVAL_FORMAT = 1
KIND_APPROVAL = "approval"
PENDING, EXECUTING, EXECUTED, FAILED = "pending", "executing", "executed", "failed"
REJECTED, EXPIRED = "rejected", "expired"
DEFAULT_TTL = 24 * 3600.0


@attrs.frozen(slots=True)
class ApprovalRule:
    """Who must approve an operation: ``{role: count}`` and how long it may wait."""

    requirements: tuple[tuple[str, int], ...]
    ttl_seconds: float = DEFAULT_TTL

    def __attrs_post_init__(self) -> None:
        if not self.requirements or any(c < 1 for _, c in self.requirements):
            raise ValueError("an approval rule needs at least one role with a count >= 1")
        check_roles(r for r, _ in self.requirements)
        if self.ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r for r, _ in self.requirements)

    @classmethod
    def of(cls, roles: Mapping[str, int], ttl_seconds: float = DEFAULT_TTL) -> "ApprovalRule":
        return cls(tuple(sorted(roles.items())), ttl_seconds)


_MK = ApprovalRule.of({SECURITY_ADMIN: 3, OPERATOR: 1})
DEFAULT_RULES: Mapping[str, ApprovalRule] = {
    "mk.generate": _MK,
    "mk.rotate": _MK,
    "mk.backup": _MK,
    "mk.restore": _MK,
    "keys.export": ApprovalRule.of({SECURITY_ADMIN: 1, KEY_ADMIN: 1}),
    "keys.schedule_deletion": ApprovalRule.of({SECURITY_ADMIN: 1, KEY_ADMIN: 1}),
    "versions.destroyed": ApprovalRule.of({SECURITY_ADMIN: 1, KEY_ADMIN: 1}),
    "keys.rollback": ApprovalRule.of({KEY_ADMIN: 1}),
    "keys.min_decryption_version": ApprovalRule.of({KEY_ADMIN: 1}),
    "roles.grant": ApprovalRule.of({SYSTEM_ADMIN: 1}),
}


def rules_from_config(raw: Mapping[str, Any]) -> dict[str, ApprovalRule]:
    """``[approvals."mk.generate"] security_admin = 3, operator = 1, ttl_seconds = 3600``."""
    rules = dict(DEFAULT_RULES)
    for operation, table in raw.items():
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"[approvals.{operation}] must be a table")
        counts = {k: v for k, v in table.items() if k != "ttl_seconds"}
        try:
            rules[operation] = ApprovalRule.of(
                counts, float(table.get("ttl_seconds", DEFAULT_TTL)))
        except (ValueError, TypeError, KmsError) as exc:
            raise ConfigurationError(f"[approvals.{operation}] is invalid: {exc}") from None
    return rules


@attrs.frozen(slots=True)
class ApprovalRequest:
    id: str
    operation: str
    params: Mapping[str, Any]
    requester: str
    reason: str
    created_at: float
    expires_at: float
    status: str
    requirements: tuple[tuple[str, int], ...]
    approvals: tuple[Mapping[str, Any], ...] = ()
    rejections: tuple[Mapping[str, Any], ...] = ()
    result: Mapping[str, Any] | None = None
    error: str | None = None
    finished_at: float | None = None
    revision: int = attrs.field(default=0, eq=False)

    @property
    def approvers(self) -> list[str]:
        return [a["user"] for a in self.approvals]

    def to_document(self) -> dict[str, Any]:
        return {
            "format": APPROVAL_FORMAT, "id": self.id, "operation": self.operation,
            "params": dict(self.params), "requester": self.requester, "reason": self.reason,
            "created_at": self.created_at, "expires_at": self.expires_at, "status": self.status,
            "requirements": [list(r) for r in self.requirements],
            "approvals": [dict(a) for a in self.approvals],
            "rejections": [dict(r) for r in self.rejections],
            "result": None if self.result is None else dict(self.result),
            "error": self.error, "finished_at": self.finished_at,
        }

    def summary(self) -> dict[str, Any]:
        out = self.to_document()
        del out["format"]
        out["requirements"] = {role: count for role, count in self.requirements}
        # "error" would read as an error response to HTTP clients.
        out["failure"] = out.pop("error")
        return out

    @classmethod
    def from_document(cls, d: Mapping[str, Any], revision: int) -> "ApprovalRequest":
        if d.get("format") != APPROVAL_FORMAT:
            raise IntegrityError(log_detail=f"approval format {d.get('format')!r} unsupported")
        try:
            return cls(
                id=d["id"], operation=d["operation"], params=d["params"],
                requester=d["requester"], reason=d.get("reason", ""),
                created_at=d["created_at"], expires_at=d["expires_at"], status=d["status"],
                requirements=tuple((r, int(c)) for r, c in d["requirements"]),
                approvals=tuple(d.get("approvals", ())),
                rejections=tuple(d.get("rejections", ())), result=d.get("result"),
                error=d.get("error"), finished_at=d.get("finished_at"), revision=revision)
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(log_detail=f"malformed approval record: {exc!r}") from None


@attrs.frozen(slots=True)
class ApprovalExecutor:
    """What an approved request runs.

    ``execute(request, deployment)`` performs the operation and returns a
    JSON-ready result (no secret in the clear) or None; ``validate(params,
    deployment)`` checks the parameters when the request is submitted, so a
    request that could never run is refused up front.
    """

    execute: Callable[[ApprovalRequest, "Deployment"], Mapping[str, Any] | None]
    validate: Callable[[Mapping[str, Any], "Deployment"], None] | None = None


def quorum_met(requirements: Iterable[tuple[str, int]],
               approvers: Mapping[str, frozenset[str]]) -> bool:
    """Can each role slot be filled by a distinct approver holding that role?

    A bipartite matching (augmenting paths; the sets are tiny), so a user
    with two roles fills one slot, whichever makes the quorum.
    """
    slots = [role for role, count in requirements for _ in range(count)]
    if len(slots) > len(approvers):
        return False
    holder: dict[int, str] = {}  # slot -> approver

    def assign(user: str, seen: set[int]) -> bool:
        for i, role in enumerate(slots):
            if role in approvers[user] and i not in seen:
                seen.add(i)
                if i not in holder or assign(holder[i], seen):
                    holder[i] = user
                    return True
        return False

    for user in approvers:
        assign(user, set())
    return len(holder) == len(slots)


def approval_principal(request_id: str) -> Principal:
    """Who an approved request acts as (in key history and audit)."""
    return Principal(id=request_id, kind="approval")


class Approvals:
    def __init__(self, storage: Storage, users: UserDirectory, *,
                 rules: Mapping[str, ApprovalRule] = DEFAULT_RULES,
                 audit: Callable[[AuditEvent], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.users = users
        self.rules = dict(rules)
        self.audit = audit
        self.clock = clock
        self.executors: dict[str, ApprovalExecutor] = {}
        self.deployment: "Deployment | None" = None

    def register_executor(self, operation: str, executor: ApprovalExecutor) -> None:
        if operation in self.executors:
            raise ConfigurationError(f"two executors registered for {operation!r}")
        self.executors[operation] = executor

    # -- reading --------------------------------------------------------------------

    def get(self, request_id: str) -> ApprovalRequest:
        doc = self.storage.get(KIND_APPROVAL, request_id) if isinstance(request_id, str) else None
        if doc is None:
            raise NotFound(f"no approval request {request_id!r}")
        request = ApprovalRequest.from_document(doc.data, doc.revision)
        return self._expire_if_due(request)

    def list(self, status: str | None = None) -> list[ApprovalRequest]:
        out = []
        for doc in self.storage.list(KIND_APPROVAL):
            request = self._expire_if_due(ApprovalRequest.from_document(doc.data, doc.revision))
            if status is None or request.status == status:
                out.append(request)
        return sorted(out, key=lambda r: r.created_at, reverse=True)

    # -- acting ---------------------------------------------------------------------------

    def submit(self, operation: str, params: Mapping[str, Any], requester: Principal, *,
               reason: str = "", source: str | None = None) -> ApprovalRequest:
        """Create a pending request for ``operation`` (the requester must be allowed it)."""
        rule = self.rules.get(operation)
        executor = self.executors.get(operation)
        if rule is None or executor is None:
            raise InvalidRequest(f"{operation!r} is not available for approval in this deployment")
        permission = permission_for(operation) or operation
        if requester.kind != "user" or permission not in PERMISSIONS or \
                not allowed(requester, permission):
            self._record(requester, "approvals.submit", "permission_denied", source,
                         detail=f"{operation}: lacks {permission}")
            raise PermissionDenied(log_detail=f"{requester} may not request {operation}")
        if not isinstance(params, Mapping):
            raise InvalidRequest("params must be an object")
        if executor.validate is not None:
            executor.validate(params, self._deployment())
        now = self.clock()
        request = ApprovalRequest(
            id="apr-" + _random.token_hex(8), operation=operation, params=dict(params),
            requester=requester.id, reason=str(reason)[:500], created_at=now,
            expires_at=now + rule.ttl_seconds, status=PENDING, requirements=rule.requirements)
        revision = self.storage.put(KIND_APPROVAL, request.id, request.to_document(), 0)
        self._record(requester, "approvals.submit", "ok", source, target=request.id,
                     detail=operation, key=_key_of(request))
        return attrs.evolve(request, revision=revision)

    def approve(self, request_id: str, approver: Principal, code: str, *,
                source: str | None = None) -> ApprovalRequest:
        """Approve with a fresh TOTP code; runs the operation once the quorum is met."""
        request = self.get(request_id)
        try:
            self._check_approver(request, approver, code)
        except KmsError as exc:
            self._record(approver, "approvals.approve", exc.code, source, target=request_id,
                         detail=exc.log_detail or exc.message, key=_key_of(request))
            raise
        now = self.clock()

        def change(r: ApprovalRequest) -> ApprovalRequest:
            _require_pending(r, now)
            if approver.id in r.approvers:
                raise Conflict("you have already approved this request")
            return attrs.evolve(r, approvals=(*r.approvals, {"user": approver.id, "at": now}))

        request = self._update(request_id, change)
        self._record(approver, "approvals.approve", "ok", source, target=request_id,
                     detail=request.operation, key=_key_of(request))
        if self._quorum(request):
            request = self._execute(request)
        return request

    def reject(self, request_id: str, user: Principal, code: str, *, reason: str = "",
               source: str | None = None) -> ApprovalRequest:
        """Reject (an eligible approver) or withdraw (the requester) a pending request."""
        request = self.get(request_id)
        try:
            if user.kind != "user":
                raise PermissionDenied(log_detail=f"{user} is not a user")
            if user.id != request.requester and \
                    not self._roles_of(user.id) & _roles(request.requirements):
                raise PermissionDenied(log_detail=f"{user} holds none of the approving roles")
            _require_pending(request)
            self.users.confirm_second_factor(user.id, code)
        except KmsError as exc:
            self._record(user, "approvals.reject", exc.code, source, target=request_id,
                         detail=exc.log_detail or exc.message, key=_key_of(request))
            raise
        now = self.clock()

        def change(r: ApprovalRequest) -> ApprovalRequest:
            _require_pending(r, now)
            entry = {"user": user.id, "at": now, "reason": str(reason)[:500]}
            return attrs.evolve(r, status=REJECTED, rejections=(*r.rejections, entry),
                                finished_at=now)

        request = self._update(request_id, change)
        self._record(user, "approvals.reject", "ok", source, target=request_id,
                     detail=request.operation, key=_key_of(request))
        return request

    # -- internals ---------------------------------------------------------------------------

    def _check_approver(self, request: ApprovalRequest, approver: Principal, code: str) -> None:
        if approver.kind != "user":
            raise PermissionDenied(log_detail=f"{approver} is not a user")
        _require_pending(request)
        if approver.id == request.requester:
            raise PermissionDenied("you cannot approve your own request",
                                   log_detail=f"{approver} tried to approve their own request")
        if approver.id in request.approvers:
            raise Conflict("you have already approved this request")
        if not self._roles_of(approver.id) & _roles(request.requirements):
            raise PermissionDenied(
                log_detail=f"{approver} holds none of {sorted(_roles(request.requirements))}")
        self.users.confirm_second_factor(approver.id, code)

    def _roles_of(self, name: str) -> frozenset[str]:
        user = self.users.find(name)
        return user.roles if user is not None and user.active else frozenset()

    def _quorum(self, request: ApprovalRequest) -> bool:
        needed = _roles(request.requirements)
        counted = {}
        for name in request.approvers:
            roles = self._roles_of(name) & needed  # revoked or disabled: counts no more
            if roles and name != request.requester:
                counted[name] = roles
        return quorum_met(request.requirements, counted)

    def _execute(self, request: ApprovalRequest) -> ApprovalRequest:
        def claim(r: ApprovalRequest) -> ApprovalRequest:
            _require_pending(r)
            return attrs.evolve(r, status=EXECUTING)

        try:
            request = self._update(request.id, claim)
        except Conflict:  # another worker's approval completed the quorum first
            return self.get(request.id)
        executor = self.executors[request.operation]
        actor = approval_principal(request.id)
        try:
            result = executor.execute(request, self._deployment())
            status, error = EXECUTED, None
        except KmsError as exc:
            result, status, error = None, FAILED, exc.code
        now = self.clock()
        request = self._update(request.id, lambda r: attrs.evolve(
            r, status=status, result=None if result is None else dict(result), error=error,
            finished_at=now), allow_executing=True)
        self._record(actor, "approvals.execute", error or "ok", None, target=request.id,
                     detail=request.operation, key=_key_of(request))
        return request

    def _expire_if_due(self, request: ApprovalRequest) -> ApprovalRequest:
        if request.status != PENDING or self.clock() < request.expires_at:
            return request
        try:
            expired = self._update(request.id, lambda r: attrs.evolve(
                r, status=EXPIRED, finished_at=self.clock()) if r.status == PENDING else r)
        except Conflict:
            return request
        self._record(approval_principal(request.id), "approvals.expire", "ok", None,
                     target=request.id, detail=request.operation)
        return expired

    def _update(self, request_id: str, change: Callable[[ApprovalRequest], ApprovalRequest],
                allow_executing: bool = False) -> ApprovalRequest:
        for _ in range(20):
            doc = self.storage.get(KIND_APPROVAL, request_id)
            if doc is None:
                raise NotFound(f"no approval request {request_id!r}")
            current = ApprovalRequest.from_document(doc.data, doc.revision)
            if current.status == EXECUTING and not allow_executing:
                raise Conflict("the request is being executed")
            new = change(current)
            try:
                revision = self.storage.put(KIND_APPROVAL, request_id, new.to_document(),
                                            expected_revision=current.revision)
            except ConcurrentModification:
                continue
            return attrs.evolve(new, revision=revision)
        raise ConcurrentModification("the approval request is busy; retry")

    def _deployment(self) -> "Deployment":
        if self.deployment is None:
            raise ConfigurationError("approvals are not attached to a deployment")
        return self.deployment

    def _record(self, principal: Principal, action: str, outcome: str, source: str | None,
                **fields: Any) -> None:
        if self.audit is not None:
            self.audit(AuditEvent.of(principal, action, at=self.clock(), outcome=outcome,
                                     source=source, **fields))


def _roles(requirements: Iterable[tuple[str, int]]) -> frozenset[str]:
    return frozenset(role for role, _ in requirements)


def _require_pending(request: ApprovalRequest, now: float | None = None) -> None:
    if request.status == EXPIRED or (
            request.status == PENDING and now is not None and now >= request.expires_at):
        raise Conflict("the request has expired")
    if request.status != PENDING:
        raise Conflict(f"the request is {request.status}, not pending")


def _key_of(request: ApprovalRequest) -> str | None:
    key = request.params.get("key")
    return key if isinstance(key, str) else None

"""Dual control for the master-key ceremonies that need custodians in the room.

Generating or rotating a master key *from custodian shares*, backing one up
(re-sharing it to new custodians) and restoring one into a token all move
shares between the custodians and the ceremony host. Shares must never be
stored in an approval request, so such a request cannot simply run inside the
service once its quorum approves. Its executor issues a *ceremony ticket*
instead: a stored, single-use authorisation to run exactly the approved
operation with exactly the approved parameters, valid for the rule's
``ttl_seconds``.

``kmsframe hsm generate|rotate|backup|restore --approval apr-…`` then, on
the ceremony host:

1. :meth:`CeremonyTickets.check` — the ticket exists, is for this operation,
   is unused and unexpired — *before* any custodian types a share;
2. :meth:`CeremonyTickets.claim` — marks it used with a compare-and-swap, so
   one approval runs one ceremony even if two hosts race;
3. runs the ceremony with the ticket's parameters (the command line cannot
   change them);
4. :meth:`CeremonyTickets.finish` — records the outcome on the ticket, and
   the caller writes it to the audit log.

A claimed ticket is spent whatever the outcome: a ceremony that failed (a
mistyped share, a token that was down) needs a new approval. That is the
price of never letting one approval run twice.

Stored record (kind ``"ceremony_ticket"``, id = approval request id)::

    {"format": 1, "request_id", "operation", "params", "issued_at",
     "expires_at", "status": "issued"|"claimed"|"done"|"failed",
     "claimed_at", "finished_at", "outcome"}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import ConcurrentModification, Conflict, IntegrityError, NotFound, PermissionDenied
from .providers import Storage

KIND_TICKET = "ceremony_ticket"
TICKET_FORMAT = 1
ISSUED, CLAIMED, DONE, FAILED = "issued", "claimed", "done", "failed"


@attrs.frozen(slots=True)
class CeremonyTicket:
    """One approved ceremony, runnable once."""

    request_id: str
    operation: str
    params: Mapping[str, Any]
    issued_at: float
    expires_at: float
    status: str = ISSUED
    claimed_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None
    revision: int = attrs.field(default=0, eq=False)

    def to_document(self) -> dict[str, Any]:
        return {"format": TICKET_FORMAT, "request_id": self.request_id,
                "operation": self.operation, "params": dict(self.params),
                "issued_at": self.issued_at, "expires_at": self.expires_at,
                "status": self.status, "claimed_at": self.claimed_at,
                "finished_at": self.finished_at, "outcome": self.outcome}

    @classmethod
    def from_document(cls, d: Mapping[str, Any], revision: int) -> "CeremonyTicket":
        if d.get("format") != TICKET_FORMAT:
            raise IntegrityError(log_detail=f"ceremony ticket format {d.get('format')!r}")
        try:
            return cls(request_id=d["request_id"], operation=d["operation"],
                       params=d["params"], issued_at=d["issued_at"],
                       expires_at=d["expires_at"], status=d["status"],
                       claimed_at=d.get("claimed_at"), finished_at=d.get("finished_at"),
                       outcome=d.get("outcome"), revision=revision)
        except (KeyError, TypeError) as exc:
            raise IntegrityError(log_detail=f"malformed ceremony ticket: {exc!r}") from None


class CeremonyTickets:
    """Issue, check, claim and close ceremony tickets in the deployment's store."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.clock = clock

    def issue(self, request_id: str, operation: str, params: Mapping[str, Any],
              ttl_seconds: float) -> CeremonyTicket:
        """Store a fresh ticket for an approved request (once per request)."""
        now = self.clock()
        ticket = CeremonyTicket(request_id, operation, dict(params), now, now + ttl_seconds)
        try:
            revision = self.storage.put(KIND_TICKET, request_id, ticket.to_document(), 0)
        except Conflict:  # AlreadyExists: the executor ran twice — keep the first ticket
            raise Conflict(f"request {request_id} already has a ceremony ticket") from None
        return attrs.evolve(ticket, revision=revision)

    def check(self, request_id: str, operation: str) -> CeremonyTicket:
        """The ticket, if it may run ``operation`` now; else PermissionDenied."""
        doc = self.storage.get(KIND_TICKET, request_id) if isinstance(request_id, str) else None
        if doc is None:
            raise NotFound(f"no approved ceremony {request_id!r}: submit mk.* for approval "
                           "and give the request id once the quorum has approved")
        ticket = CeremonyTicket.from_document(doc.data, doc.revision)
        if ticket.operation != operation:
            raise PermissionDenied(f"request {request_id} approved {ticket.operation}, "
                                   f"not {operation}")
        if ticket.status != ISSUED:
            raise PermissionDenied(f"request {request_id} was already used "
                                   f"({ticket.status}); a new ceremony needs a new approval")
        if self.clock() >= ticket.expires_at:
            raise PermissionDenied(f"the approval of request {request_id} has expired")
        return ticket

    def claim(self, request_id: str, operation: str) -> CeremonyTicket:
        """Spend the ticket: after this no one can run it again."""
        ticket = self.check(request_id, operation)
        claimed = attrs.evolve(ticket, status=CLAIMED, claimed_at=self.clock())
        try:
            revision = self.storage.put(KIND_TICKET, request_id, claimed.to_document(),
                                        expected_revision=ticket.revision)
        except ConcurrentModification:
            raise PermissionDenied(f"request {request_id} was used by another "
                                   "ceremony just now") from None
        return attrs.evolve(claimed, revision=revision)

    def finish(self, ticket: CeremonyTicket, outcome: str) -> CeremonyTicket:
        """Record how the claimed ceremony ended (``"ok"`` or an error code)."""
        done = attrs.evolve(ticket, status=DONE if outcome == "ok" else FAILED,
                            finished_at=self.clock(), outcome=outcome)
        revision = self.storage.put(KIND_TICKET, ticket.request_id, done.to_document(),
                                    expected_revision=ticket.revision)
        return attrs.evolve(done, revision=revision)

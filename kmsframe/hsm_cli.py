"""``kmsframe hsm ...``: master-key ceremonies and HSM status from the shell.

Each command is a thin shell over :mod:`kmsframe.ceremonies`. The ceremonies
that move custodian shares run only under an approved dual-control request
(``--approval apr-…``), spending its single-use ticket
(:mod:`kmsframe.ceremony_tickets`); the parameters come from the approval,
not the command line. Shares are shown once on standard output, one line
per custodian; shares given back (backup, restore) are read from files or
typed without echo, never taken on the command line.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from . import ceremonies
from .approval_executors import custodians
from .approvals import approval_principal
from .audit.records import AuditEvent
from .authorization import SYSTEM
from .ceremony_tickets import CeremonyTicket, CeremonyTickets
from .errors import KmsError, PermissionDenied
from .secrets import Secret

if TYPE_CHECKING:
    from .deployment import Deployment


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KmsError as exc:
            click.echo(f"error: {exc.code}: {exc.message}", err=True)
            ctx.exit(1)


def _show_shares(new: ceremonies.NewMasterKey) -> None:
    click.echo(f"master key {new.master_key_id}")
    for share in new.shares:
        # Shown exactly once: hand each line to a different custodian.
        click.echo(f"custodian share: {share.reveal_text()}")


def _read_shares(files: tuple[str, ...], count: int | None) -> list[Secret]:
    shares = [Secret(Path(f).read_bytes().strip()) for f in files]
    for i in range(count or 0):
        shares.append(Secret.from_text(click.prompt(f"share {i + 1}", hide_input=True)))
    if not shares:
        raise click.UsageError("give shares with --share-file (repeat) or --prompt N")
    return shares


approval_option = click.option(
    "--approval", "request_id", required=True, metavar="REQUEST_ID",
    help="The approved dual-control request (apr-...) this ceremony carries out.")


def _check(d: "Deployment", request_id: str, operation: str) -> CeremonyTicket:
    """The request's ticket, checked before any custodian types a share; refusals audited."""
    try:
        return CeremonyTickets(d.storage).check(request_id, operation)
    except KmsError as exc:
        _refused(d, approval_principal(request_id), operation, exc.code, target=request_id)
        raise


@contextmanager
def _ceremony(d: "Deployment", ticket: CeremonyTicket) -> Iterator[Mapping[str, Any]]:
    """Spend the ticket, run the body with its parameters, record the outcome
    (on the ticket, and bracketed in the audit log like any management call)."""
    tickets = CeremonyTickets(d.storage)
    with d.access.write_ahead(approval_principal(ticket.request_id), ticket.operation,
                              target=ticket.request_id, detail=_HOST):
        claimed = tickets.claim(ticket.request_id, ticket.operation)
        outcome = "internal_error"
        try:
            yield claimed.params
            outcome = "ok"
        except KmsError as exc:
            outcome = exc.code
            raise
        finally:
            tickets.finish(claimed, outcome)


_HOST = f"ceremony on host {socket.gethostname()}"


def _refused(d: "Deployment", actor: object, operation: str, outcome: str, *,
             target: str | None = None, detail: str = _HOST) -> None:
    """Record a ceremony refused before it started (nothing ran, so no write-ahead)."""
    d.access.audit.record(AuditEvent(at=time.time(), actor=str(actor), action=operation,
                                     outcome=outcome, target=target, detail=detail))


def _new_master_key(ctx: Any, request_id: str, operation: str) -> None:
    with ctx.deployment() as d:
        ticket = _check(d, request_id, operation)
        with _ceremony(d, ticket) as params:
            count, threshold = custodians(params) or (None, None)
            if operation == "mk.generate":
                _show_shares(ceremonies.generate_master_key(d.hsm, shares=count,
                                                            threshold=threshold))
                return
            new, report = ceremonies.rotate_master_key(
                d.hsm, d.service.keys, shares=count, threshold=threshold,
                actor=str(approval_principal(request_id)),
                on_changed=lambda name: d.service.signal.bump())
            _show_shares(new)
            _print(report.as_dict())
        if not report.complete:
            click.get_current_context().exit(2)


@click.group(cls=_Group)
def hsm() -> None:
    """Master-key ceremonies (generate, rotate, back up, restore, retire) and HSM status.

    generate, rotate (with custodian shares), backup and restore run only
    under an approved dual-control request (POST /v1/master-keys/<verb>):
    give its id with --approval; each approval runs one ceremony.
    """


@hsm.command("status")
@click.pass_obj
def status(ctx: Any) -> None:
    """Show the HSM backend and each token's state."""
    with ctx.deployment() as d:
        _print(attrs.asdict(d.hsm.status()))


@hsm.command("generate")
@approval_option
@click.pass_obj
def generate(ctx: Any, request_id: str) -> None:
    """Make a new current master key from custodian shares (working keys not re-wrapped)."""
    _new_master_key(ctx, request_id, "mk.generate")


@hsm.command("rotate")
@approval_option
@click.pass_obj
def rotate(ctx: Any, request_id: str) -> None:
    """New share-made master key, then re-wrap every working-key version under it (online)."""
    _new_master_key(ctx, request_id, "mk.rotate")


@hsm.command("rewrap")
@click.pass_obj
def rewrap(ctx: Any) -> None:
    """Re-wrap every version not yet under the current master key (resumes a rotation).

    Not under dual control: it changes no key and no master key, only
    finishes moving wrapped forms to the master key a ceremony made current.
    """
    with ctx.deployment() as d, d.access.write_ahead(SYSTEM, "mk.rewrap") as note:
        report = ceremonies.rewrap_working_keys(
            d.hsm, d.service.keys, actor="cli", on_changed=lambda name: d.service.signal.bump())
        if not report.complete:
            note.outcome = "partial"
        _print(report.as_dict())
    if not report.complete:
        click.get_current_context().exit(2)


@hsm.command("backup")
@approval_option
@click.option("--share-file", "share_files", multiple=True, help="A file holding one old share.")
@click.option("--prompt", "prompt_count", type=int, default=None,
              help="Type N old shares without echo.")
@click.pass_obj
def backup(ctx: Any, request_id: str, share_files: tuple[str, ...],
           prompt_count: int | None) -> None:
    """Re-split a share-made master key for a new set of custodians (M old shares in).

    How many new shares, and how many rebuild it, are fixed by the approval.
    """
    with ctx.deployment() as d:
        ticket = _check(d, request_id, "mk.backup")
        old = _read_shares(share_files, prompt_count)
        with _ceremony(d, ticket) as params:
            _show_shares(ceremonies.backup_master_key(
                d.hsm, old, count=params["shares"], threshold=params["threshold"]))


@hsm.command("restore")
@click.option("--approval", "request_id", metavar="REQUEST_ID",
              help="The approved dual-control request (apr-...) this ceremony carries out.")
@click.option("--disaster-recovery", is_flag=True,
              help="No token holds the master key any more, so nobody's second factor can be "
                   "checked: restore on the custodians' shares alone (refused otherwise).")
@click.option("--token", "tokens", multiple=True,
              help="With --disaster-recovery: load into this token only (repeat).")
@click.option("--share-file", "share_files", multiple=True, help="A file holding one share.")
@click.option("--prompt", "prompt_count", type=int, default=None,
              help="Type N shares without echo.")
@click.pass_obj
def restore(ctx: Any, request_id: str | None, disaster_recovery: bool, tokens: tuple[str, ...],
            share_files: tuple[str, ...], prompt_count: int | None) -> None:
    """Rebuild a master key from M custodian shares and load it into tokens.

    Which tokens, and whether it becomes current, are fixed by the approval.
    """
    if (request_id is None) == (not disaster_recovery):
        raise click.UsageError("give either --approval REQUEST_ID or --disaster-recovery")
    if tokens and not disaster_recovery:
        raise click.UsageError("--token goes with --disaster-recovery; an approval names "
                               "its tokens")
    with ctx.deployment() as d:
        if disaster_recovery:
            _disaster_recovery(ctx, d, tokens, share_files, prompt_count)
            return
        assert request_id is not None
        ticket = _check(d, request_id, "mk.restore")
        shares = _read_shares(share_files, prompt_count)
        with _ceremony(d, ticket) as params:
            _print(dict(ceremonies.restore_master_key(
                d.hsm, shares, token_labels=params.get("tokens", ()),
                make_current=params.get("make_current", False))))


def _disaster_recovery(ctx: Any, d: "Deployment", tokens: tuple[str, ...],
                       share_files: tuple[str, ...], prompt_count: int | None) -> None:
    """Restore after total loss: allowed only when the HSM opens no stored key."""
    actor = f"cli:disaster-recovery@{socket.gethostname()}"
    if not ceremonies.master_key_lost(d.hsm, d.service.keys):
        _refused(d, actor, "mk.restore", "permission_denied",
                 detail="a token still holds the master key")
        raise PermissionDenied("a configured token still holds the master key the data needs: "
                               "restore under an approved request (--approval)")
    shares = _read_shares(share_files, prompt_count)
    with d.access.write_ahead(actor, "mk.restore", detail="custodian shares only"):
        result = ceremonies.restore_master_key(d.hsm, shares, token_labels=tokens)
    _print(dict(result))


@hsm.command("retire")
@click.argument("master_key_id")
@click.pass_obj
def retire(ctx: Any, master_key_id: str) -> None:
    """Destroy an old master key; refused while any key version still needs it."""
    with ctx.deployment() as d, d.access.write_ahead(SYSTEM, "mk.retire", target=master_key_id):
        _print({"retired": master_key_id,
                "tokens": ceremonies.retire_master_key(d.hsm, d.service.keys, master_key_id)})


@hsm.command("master-keys")
@click.pass_obj
def master_keys(ctx: Any) -> None:
    """List master keys per token with their security attributes (pkcs11)."""
    with ctx.deployment() as d:
        lister = getattr(d.hsm, "master_keys", None)
        if lister is None:
            raise click.UsageError(f"HSM backend {d.hsm.id!r} cannot list its master keys")
        _print(lister())

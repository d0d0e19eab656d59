"""``kmsframe hsm ...``: master-key ceremonies and HSM status from the shell.

Each command is a thin shell over :mod:`kmsframe.ceremonies`, so the same
ceremony can later be gated by dual-control approvals. Shares are shown once
on standard output, one line per custodian; shares given back (restore) are
read from files or typed without echo, never taken on the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import click

from . import ceremonies
from .errors import KmsError
from .secrets import Secret


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


shares_option = click.option("--shares", type=int, default=None,
                             help="Make the master key from N custodian shares (M-of-N).")
threshold_option = click.option("--threshold", type=int, default=None,
                                help="Shares needed to rebuild it (M).")


@click.group(cls=_Group)
def hsm() -> None:
    """Master-key ceremonies (generate, rotate, back up, restore, retire) and HSM status."""


@hsm.command("status")
@click.pass_obj
def status(ctx: Any) -> None:
    """Show the HSM backend and each token's state."""
    with ctx.deployment() as d:
        _print(attrs.asdict(d.hsm.status()))


@hsm.command("generate")
@shares_option
@threshold_option
@click.pass_obj
def generate(ctx: Any, shares: int | None, threshold: int | None) -> None:
    """Make a new current master key (working keys are not re-wrapped)."""
    with ctx.deployment() as d:
        _show_shares(ceremonies.generate_master_key(d.hsm, shares=shares, threshold=threshold))


@hsm.command("rotate")
@shares_option
@threshold_option
@click.pass_obj
def rotate(ctx: Any, shares: int | None, threshold: int | None) -> None:
    """New master key, then re-wrap every working-key version under it (online)."""
    with ctx.deployment() as d:
        new, report = ceremonies.rotate_master_key(
            d.hsm, d.service.keys, shares=shares, threshold=threshold, actor="cli",
            on_changed=lambda name: d.service.signal.bump())
        _show_shares(new)
        _print(report.as_dict())
        if not report.complete:
            click.get_current_context().exit(2)


@hsm.command("rewrap")
@click.pass_obj
def rewrap(ctx: Any) -> None:
    """Re-wrap every version not yet under the current master key (resumes a rotation)."""
    with ctx.deployment() as d:
        report = ceremonies.rewrap_working_keys(
            d.hsm, d.service.keys, actor="cli", on_changed=lambda name: d.service.signal.bump())
        _print(report.as_dict())
        if not report.complete:
            click.get_current_context().exit(2)


@hsm.command("backup")
@click.option("--share-file", "share_files", multiple=True, help="A file holding one old share.")
@click.option("--prompt", "prompt_count", type=int, default=None,
              help="Type N old shares without echo.")
@click.option("--shares", type=int, required=True, help="How many new shares (N).")
@click.option("--threshold", type=int, required=True, help="New shares needed (M).")
@click.pass_obj
def backup(ctx: Any, share_files: tuple[str, ...], prompt_count: int | None, shares: int,
           threshold: int) -> None:
    """Re-split a share-made master key for a new set of custodians (M old shares in)."""
    old = _read_shares(share_files, prompt_count)
    with ctx.deployment() as d:
        _show_shares(ceremonies.backup_master_key(d.hsm, old, count=shares, threshold=threshold))


@hsm.command("restore")
@click.option("--share-file", "share_files", multiple=True, help="A file holding one share.")
@click.option("--prompt", "prompt_count", type=int, default=None,
              help="Type N shares without echo.")
@click.option("--token", "tokens", multiple=True, help="Load into this token only (repeat).")
@click.option("--make-current", is_flag=True, help="Also make it the current master key.")
@click.pass_obj
def restore(ctx: Any, share_files: tuple[str, ...], prompt_count: int | None,
            tokens: tuple[str, ...], make_current: bool) -> None:
    """Rebuild a master key from M custodian shares and load it into tokens."""
    shares = _read_shares(share_files, prompt_count)
    with ctx.deployment() as d:
        _print(dict(ceremonies.restore_master_key(d.hsm, shares, token_labels=tokens,
                                                  make_current=make_current)))


@hsm.command("retire")
@click.argument("master_key_id")
@click.pass_obj
def retire(ctx: Any, master_key_id: str) -> None:
    """Destroy an old master key; refused while any key version still needs it."""
    with ctx.deployment() as d:
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

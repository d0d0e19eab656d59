"""The ``kmsframe`` command line.

Without ``--config`` the CLI uses the embedded default deployment in
``--data-dir`` (default ``./data``, or ``$KMSFRAME_DATA_DIR``): software HSM,
SQLite and AES, with the unseal secret generated beside the keystore.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import click

from .authorization import SYSTEM
from .config import DeploymentConfig, embedded_config
from .deployment import Deployment
from .errors import KmsError
from .hsm_cli import hsm as hsm_commands
from .model import RotationPolicy
from .plugins import PluginHost, installed_plugins
from .serve import serve

EMBEDDED_WARNING = (
    "WARNING: embedded default deployment — software HSM (not a hardware HSM), "
    "unseal secret stored beside the keystore in {dir}. For development and evaluation only."
)


class Context:
    def __init__(self, config_path: str | None, data_dir: str) -> None:
        self.config_path = config_path
        self.data_dir = Path(data_dir)

    @property
    def embedded(self) -> bool:
        return self.config_path is None

    def config(self) -> DeploymentConfig:
        if self.config_path:
            return DeploymentConfig.load(self.config_path)
        return embedded_config(self.data_dir)

    @contextmanager
    def deployment(self) -> Iterator[Deployment]:
        with Deployment.open(self.config()) as deployment:
            yield deployment


def _fail(exc: KmsError) -> None:
    click.echo(f"error: {exc.code}: {exc.message}", err=True)
    sys.exit(1)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _duration(text: str) -> int:
    """'90d', '12h', '30m', '45s' or plain seconds → seconds."""
    match = re.fullmatch(r"(\d+)([dhms]?)", text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 90d, 12h, 30m or 45s")
    value, unit = int(match[1]), match[2] or "s"
    return value * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit]


class KmsGroup(click.Group):
    """Turns KmsErrors from any command into one clean line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KmsError as exc:
            _fail(exc)


@click.group(cls=KmsGroup)
@click.option("--config", "config_path", envvar="KMSFRAME_CONFIG", default=None,
              help="Deployment TOML file (default: the embedded deployment in --data-dir).")
@click.option("--data-dir", envvar="KMSFRAME_DATA_DIR", default="./data", show_default=True,
              help="Where the embedded deployment keeps its state.")
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, data_dir: str, verbose: bool) -> None:
    """kmsframe: a key management system assembled from plugins."""
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(config_path, data_dir)


main.add_command(hsm_commands)


# ---------------------------------------------------------------------------
# init and plugins
# ---------------------------------------------------------------------------


def ensure_embedded_secret(data_dir: Path) -> Path:
    """Create the embedded deployment's unseal secret (0600) if missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    path = data_dir / "unseal.secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


def initialize(ctx: Context, options: dict[str, Any]) -> dict[str, Any]:
    """Create the master key (if none) and the store's schema."""
    if ctx.embedded:
        ensure_embedded_secret(ctx.data_dir)
    config = ctx.config()
    plugins = PluginHost()
    plugins.load_entry_points(config.plugins)
    hsm = plugins.build_hsm(config.hsm)
    shown = dict(hsm.initialize(options))
    hsm.close()
    storage = plugins.build_storage(config.storage)
    storage.open()
    storage.close()
    return shown


@main.command()
@click.option("--shares", type=int, default=None, help="Split the unseal key into N Shamir shares.")
@click.option("--threshold", type=int, default=None, help="Shares needed to unseal (M of N).")
@click.pass_obj
def init(ctx: Context, shares: int | None, threshold: int | None) -> None:
    """Create the master key in the HSM and the key store's schema."""
    if ctx.embedded:
        click.echo(EMBEDDED_WARNING.format(dir=ctx.data_dir.resolve()), err=True)
    options = {"shares": shares, "threshold": threshold} if shares else {}
    shown = initialize(ctx, options)
    if shown.get("created"):
        click.echo(f"master key {shown['master_key_id']} created")
    else:
        click.echo(f"already initialised (master key {shown['master_key_id']})")
    for share in shown.get("shares", []):
        # Shown exactly once: hand each line to a different custodian.
        click.echo(f"unseal share: {share.reveal_text()}")


@main.command("plugins")
@click.pass_obj
def plugins_command(ctx: Context) -> None:
    """List installed plugins and which ones this deployment activates."""
    config = ctx.config()
    host = PluginHost()
    host.load_entry_points(config.plugins)
    active = set(host.active)
    click.echo("installed plugins:")
    for plugin in installed_plugins():
        mark = "active" if plugin.name in active else "      "
        click.echo(f"  [{mark}] {plugin.name:<16} {plugin.distribution} {plugin.version}")
    click.echo("offered by active plugins:")
    for kind, ids in host.offered().items():
        click.echo(f"  {kind:<11} {', '.join(ids) or '-'}")
    click.echo(f"selected: hsm={config.hsm['backend']} storage={config.storage['backend']}")


# ---------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------


@main.group(cls=KmsGroup)
def keys() -> None:
    """Create and manage working keys."""


@keys.command("create")
@click.argument("name")
@click.option("--algorithm", default="aes-256-gcm", show_default=True)
@click.option("--purpose", default=None, help="encrypt, sign or mac (default: the algorithm's).")
@click.option("--rotation-period", default=None, help="Rotate automatically, e.g. 90d.")
@click.option("--notice", default="0", help="Announce a rotation this long before, e.g. 7d.")
@click.option("--description", default="")
@click.pass_obj
def keys_create(ctx: Context, name: str, algorithm: str, purpose: str | None,
                rotation_period: str | None, notice: str, description: str) -> None:
    """Create a working key with its first version (10001)."""
    policy = None
    if rotation_period:
        try:
            policy = RotationPolicy(_duration(rotation_period), _duration(notice))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    with ctx.deployment() as d, d.access.write_ahead(SYSTEM, "keys.create", key=name):
        key = d.service.create_key(name, algorithm=algorithm, purpose=purpose,
                                   rotation_policy=policy, description=description)
        _print_json(key.summary())


@keys.command("list")
@click.pass_obj
def keys_list(ctx: Context) -> None:
    """List keys."""
    with ctx.deployment() as d:
        for key in d.service.list_keys():
            click.echo(f"{key.name}\t{key.algorithm}\t{key.status.value}\tprimary={key.primary_version}")


@keys.command("show")
@click.argument("name")
@click.option("--history", is_flag=True, help="Include the key's full history.")
@click.pass_obj
def keys_show(ctx: Context, name: str, history: bool) -> None:
    """Show a key, its versions and (optionally) its history."""
    with ctx.deployment() as d:
        key = d.service.get_key(name)
        out = key.summary()
        if history:
            out["history"] = [
                {k: v for k, v in attrs.asdict(h).items() if v is not None} for h in key.history
            ]
        _print_json(out)


def _management(verb: str, doc: str, call: Callable[..., Any], *extra: Callable[[Any], Any]) -> None:
    def command(ctx: Context, name: str, reason: str | None, **kwargs: Any) -> None:
        with ctx.deployment() as d, d.access.write_ahead(SYSTEM, f"keys.{verb}", key=name,
                                                        detail=reason):
            key = call(d.service, name, reason=reason, **kwargs)
            _print_json(key.summary())

    # click lists parameters in the reverse order of decoration.
    for option in extra:
        command = option(command)
    command = click.option("--reason", default=None, help="Recorded in the key's history.")(command)
    command = click.argument("name")(click.pass_obj(command))
    keys.command(verb, help=doc)(command)


_management("rotate", "Make a new primary version.", lambda s, n, **kw: s.rotate(n, **kw))
_management("rollback", "Emergency rollback to the previous stable version.",
            lambda s, n, **kw: s.rollback(n, **kw))
_management("disable", "Disable a key (no crypto until enabled).",
            lambda s, n, **kw: s.disable(n, **kw))
_management("enable", "Enable a disabled key.", lambda s, n, **kw: s.enable(n, **kw))
_management("schedule-deletion", "Schedule a key's destruction after a waiting period.",
            lambda s, n, days=None, **kw: s.schedule_deletion(n, waiting_days=days, **kw),
            click.option("--days", type=float, default=None,
                         help="Waiting period in days (default: the deployment's, 30)."))
_management("cancel-deletion", "Cancel a scheduled deletion (the key comes back disabled).",
            lambda s, n, **kw: s.cancel_deletion(n, **kw))
_management("set-version-state", "Move a version to expired, retired, compromised or destroyed.",
            lambda s, n, version, state, **kw: s.set_version_state(n, version, state, **kw),
            click.argument("state"), click.argument("version", type=int))
_management("set-min-decryption-version", "Refuse to decrypt below this version.",
            lambda s, n, version, **kw: s.set_min_decryption_version(n, version, **kw),
            click.argument("version", type=int))


@keys.command("run-scheduler")
@click.pass_obj
def keys_run_scheduler(ctx: Context) -> None:
    """Run one pass of the scheduler: due rotations and destructions."""
    from .scheduler import Scheduler

    with ctx.deployment() as d:
        report = Scheduler(d.service, write_ahead=d.access.write_ahead).run_once()
        _print_json({"announced": report.announced, "rotated": report.rotated,
                     "destroyed": report.destroyed, "failed": report.failed})


# ---------------------------------------------------------------------------
# quick crypto checks
# ---------------------------------------------------------------------------


def _context(pairs: tuple[str, ...]) -> dict[str, str] | None:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"context {pair!r} is not key=value")
        k, v = pair.split("=", 1)
        out[k] = v
    return out or None


@main.command()
@click.argument("name")
@click.argument("plaintext", required=False)
@click.option("--context", "context", multiple=True, help="Encryption context key=value (repeatable).")
@click.pass_obj
def encrypt(ctx: Context, name: str, plaintext: str | None, context: tuple[str, ...]) -> None:
    """Encrypt PLAINTEXT (or standard input) and print the ciphertext."""
    data = plaintext.encode() if plaintext is not None else sys.stdin.buffer.read()
    with ctx.deployment() as d:
        click.echo(d.service.encrypt(name, data, _context(context)).ciphertext)


@main.command()
@click.argument("name")
@click.argument("ciphertext")
@click.option("--context", "context", multiple=True, help="Encryption context key=value (repeatable).")
@click.option("--base64", "as_base64", is_flag=True, help="Print the plaintext base64-encoded.")
@click.pass_obj
def decrypt(ctx: Context, name: str, ciphertext: str, context: tuple[str, ...], as_base64: bool) -> None:
    """Decrypt CIPHERTEXT and print the plaintext."""
    with ctx.deployment() as d:
        plaintext = d.service.decrypt(name, ciphertext.strip(), _context(context))
    if as_base64:
        click.echo(base64.b64encode(plaintext).decode())
    else:
        sys.stdout.buffer.write(plaintext + b"\n")


from .access.cli import bindings as _bindings_commands  # noqa: E402
from .access.cli import users as _users_commands  # noqa: E402
from .audit.cli import audit as _audit_commands  # noqa: E402

main.add_command(_audit_commands)
main.add_command(_users_commands)
main.add_command(_bindings_commands)
main.add_command(serve)  # kmsframe serve: the HTTP service (kmsframe/serve.py)

if __name__ == "__main__":  # pragma: no cover
    main()

"""``kmsframe users ...`` and ``kmsframe bindings ...``: local administration.

These run as the local ``system`` principal: whoever can run them can read
the deployment's configuration and HSM secrets anyway. They exist to create
the first administrators (bootstrap) and for recovery; day-to-day role grants
go through dual control over the HTTP API.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..access.users import new_password
from ..authorization import SYSTEM


@click.group("users")
def users() -> None:
    """Create and manage human administrators (bootstrap and recovery)."""


@users.command("create")
@click.argument("name")
@click.option("--role", "roles", multiple=True,
              help="system_admin, security_admin, key_admin, auditor or operator (repeatable).")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Read the password from this file (default: generate and print one).")
@click.pass_obj
def users_create(ctx: Any, name: str, roles: tuple[str, ...], password_file: str | None) -> None:
    """Create a user; prints the TOTP enrolment URI (and password) once."""
    if password_file:
        with open(password_file, encoding="utf-8") as f:
            password, shown = f.read().rstrip("\r\n"), False
    else:
        password, shown = new_password(), True
    with ctx.deployment() as d, d.access.write_ahead(
            SYSTEM, "users.create", target=name, detail=",".join(sorted(roles))):
        user, uri = d.access.users.create(name, password, frozenset(roles))
    click.echo(f"user {name} created with roles: {', '.join(sorted(user.roles)) or '-'}")
    if shown:
        click.echo(f"initial password (shown once): {password}")
    click.echo(f"TOTP enrolment URI (shown once, scan into an authenticator): {uri}")


@users.command("list")
@click.pass_obj
def users_list(ctx: Any) -> None:
    """List users and their roles."""
    with ctx.deployment() as d:
        for user in d.access.users.list():
            click.echo(f"{user.name}\t{user.status}\t{','.join(sorted(user.roles)) or '-'}")


def _user_change(verb: str, doc: str, with_role: bool) -> None:
    def command(ctx: Any, name: str, role: str | None = None) -> None:
        with ctx.deployment() as d, d.access.write_ahead(SYSTEM, f"users.{verb}", target=name,
                                                        detail=role):
            directory = d.access.users
            if verb == "grant":
                user = directory.grant(name, role)  # type: ignore[arg-type]
            elif verb == "revoke-role":
                user = directory.revoke_role(name, role)  # type: ignore[arg-type]
            elif verb == "disable":
                user = directory.disable(name)
                d.access.sessions.revoke_user(name)
            else:
                user = directory.enable(name)
            click.echo(json.dumps(user.summary(), sort_keys=True))

    if with_role:
        command = click.argument("role")(command)
    command = click.argument("name")(click.pass_obj(command))
    users.command(verb, help=doc)(command)


_user_change("grant", "Grant a role directly (local bootstrap; the API needs approval).", True)
_user_change("revoke-role", "Remove a role from a user.", True)
_user_change("disable", "Disable a user and end their sessions.", False)
_user_change("enable", "Enable a disabled user (and clear a lockout).", False)


@click.group("bindings")
def bindings() -> None:
    """Bind keys to apps: which app may do which operations with a key."""


@bindings.command("set")
@click.argument("key")
@click.argument("app")
@click.argument("operations", nargs=-1, required=True)
@click.pass_obj
def bindings_set(ctx: Any, key: str, app: str, operations: tuple[str, ...]) -> None:
    """Allow APP the OPERATIONS (encrypt decrypt rewrap datakey sign verify mac) on KEY."""
    with ctx.deployment() as d, d.access.write_ahead(SYSTEM, "keys.bind", key=key, target=app):
        k = d.service.bind_app(key, app, operations)
        click.echo(json.dumps(k.summary()["apps"], sort_keys=True))


@bindings.command("remove")
@click.argument("key")
@click.argument("app")
@click.pass_obj
def bindings_remove(ctx: Any, key: str, app: str) -> None:
    """Remove APP's binding to KEY."""
    with ctx.deployment() as d, d.access.write_ahead(SYSTEM, "keys.unbind", key=key,
                                                    target=app):
        k = d.service.unbind_app(key, app)
        click.echo(json.dumps(k.summary()["apps"], sort_keys=True))


@bindings.command("conditions")
@click.argument("key")
@click.argument("conditions_json")
@click.pass_obj
def bindings_conditions(ctx: Any, key: str, conditions_json: str) -> None:
    """Set KEY's conditions from JSON (source_ranges, time_window, rate_limit; {} clears)."""
    try:
        conditions = json.loads(conditions_json)
    except ValueError:
        raise click.BadParameter("conditions must be a JSON object") from None
    with ctx.deployment() as d, d.access.write_ahead(SYSTEM, "keys.conditions", key=key):
        k = d.service.set_conditions(key, conditions)
        click.echo(json.dumps(k.conditions, sort_keys=True))

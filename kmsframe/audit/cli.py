"""``kmsframe audit verify`` and ``kmsframe audit search``."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from ..audit.records import AuditEvent
from ..authorization import SYSTEM
from .search import AuditQuery, search
from .sinks import ReadableSink
from .verify import verify_sinks


def _when(text: str | None) -> float | None:
    """UNIX seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither UNIX seconds nor an ISO 8601 time")
    if moment.tzinfo is None:
        from datetime import timezone

        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@click.group("audit")
def audit() -> None:
    """Verify and search the tamper-evident audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.pass_obj
def verify(ctx: Any, as_json: bool) -> None:
    """Check every readable sink: chain, seals, anchors; exit 1 on any problem."""
    with ctx.deployment() as d:
        log = d.access.audit
        ok, reports, cross = verify_sinks(log.sinks, d.storage, log.sealing)
        log.record(AuditEvent.of(SYSTEM, "audit.verify", at=log.clock(),
                                 outcome="ok" if ok else "integrity_error"))
    if as_json:
        click.echo(json.dumps({"ok": ok, "sinks": {n: r.summary() for n, r in reports.items()},
                               "cross_sink": cross}, indent=2, sort_keys=True))
    else:
        for name, report in reports.items():
            state = "OK" if report.ok else "FAILED"
            click.echo(f"{name}: {state} — {report.records} records in "
                       f"{len(report.streams)} streams")
            for problem in report.problems:
                click.echo(f"  problem: {problem}")
            for warning in report.warnings:
                click.echo(f"  note: {warning}")
        for problem in cross:
            click.echo(f"problem: {problem}")
        if not reports:
            click.echo("no audit sink can be read back; nothing was verified")
        click.echo("audit log verified" if ok else "AUDIT LOG FAILED VERIFICATION")
    if not ok:
        sys.exit(1)


@audit.command("search")
@click.option("--key", default=None)
@click.option("--app", default=None)
@click.option("--user", default=None)
@click.option("--action", default=None)
@click.option("--outcome", default=None, help="ok, permission_denied ...")
@click.option("--request-id", default=None, help="One management call's records.")
@click.option("--since", default=None, help="UNIX seconds or ISO 8601.")
@click.option("--until", default=None, help="UNIX seconds or ISO 8601.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.pass_obj
def search_command(ctx: Any, key: str | None, app: str | None, user: str | None,
                   action: str | None, outcome: str | None, request_id: str | None,
                   since: str | None, until: str | None, limit: int) -> None:
    """Print matching records (newest first) as JSON lines."""
    query = AuditQuery(key=key, app=app, user=user, action=action, outcome=outcome,
                       request_id=request_id, since=_when(since), until=_when(until),
                       limit=limit)
    with ctx.deployment() as d:
        readable = [s for s in d.access.audit.sinks if isinstance(s, ReadableSink)]
        if not readable:
            raise click.ClickException("no audit sink can be read back")
        d.access.audit.flush()
        for record in search(readable[0].read(), query):
            click.echo(json.dumps(record, sort_keys=True))

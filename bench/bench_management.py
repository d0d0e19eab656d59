"""What the write-ahead audit record costs a management call.

Creates keys through the HTTP app in-process (httpx's ASGI transport, root
token) on an embedded deployment with the default audit sink (a JSON-lines
file, fsynced per write), with the ``started`` record and then without it
(skipped by patching the audit log: a comparison only), and prints calls/s,
ms per call and the difference. Rounds alternate so machine noise hits both.

    uv run python bench/bench_management.py [--calls 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from kmsframe.audit.log import AuditLog
from kmsframe.audit.records import STARTED
from kmsframe.http import HttpSettings, build_app
from kmsframe.secrets import Secret
from kmsframe.testing import embedded_deployment

ROOT = "kmsf_root_bench-" + "b" * 40


async def create_keys(app: Any, prefix: str, calls: int) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kms",
                                 headers={"Authorization": f"Bearer {ROOT}"}) as c:
        start = time.perf_counter()
        for i in range(calls):
            r = await c.post("/v1/keys", json={"name": f"{prefix}-{i}"})
            assert r.status_code == 201, r.text
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    original = AuditLog.record

    def without_started(self: AuditLog, event: Any, *, seal: bool = True) -> None:
        if event.outcome != STARTED:
            original(self, event, seal=seal)

    with tempfile.TemporaryDirectory() as tmp:
        d = embedded_deployment(Path(tmp) / "kms")
        app = build_app(lambda: d, HttpSettings(root_token=Secret.from_text(ROOT)))
        app.runtime.open()
        try:
            asyncio.run(create_keys(app, "warm", 20))
            times: dict[str, list[float]] = {"with": [], "without": []}
            for r in range(args.rounds):
                AuditLog.record = original  # type: ignore[method-assign]
                times["with"].append(asyncio.run(create_keys(app, f"w{r}", args.calls)))
                AuditLog.record = without_started  # type: ignore[method-assign]
                times["without"].append(asyncio.run(create_keys(app, f"o{r}", args.calls)))
        finally:
            AuditLog.record = original  # type: ignore[method-assign]
            app.runtime.close()
    ms = {k: 1000 * statistics.median(v) / args.calls for k, v in times.items()}
    print(f"POST /v1/keys in-process, jsonl audit sink, {args.calls} calls, median of "
          f"{args.rounds}")
    for k in ("without", "with"):
        print(f"  {k + ' started record':<24} {1000 / ms[k]:>8,.0f} calls/s  {ms[k]:6.2f} ms/call")
    print(f"  write-ahead record costs {ms['with'] - ms['without']:+.2f} ms per call "
          f"({ms['with'] / ms['without']:.2f}x)")


if __name__ == "__main__":
    main()

"""Prometheus metrics in the text exposition format, written by hand.

``kmsframe_http_requests_total{route,method,status}``,
``kmsframe_http_request_duration_seconds`` (a histogram per route template),
``kmsframe_http_errors_total{code}`` (batch item errors included) and the key
cache's ``kmsframe_key_cache_hits_total`` / ``_misses_total``, summed over
every worker process of the server.

Recording is a few dict operations in the worker that served the request.
Workers share their counters through small JSON snapshots in
``<data_dir>/metrics/<pid>.json`` (:class:`MetricsExchange`): each worker
rewrites its own every second, and the worker answering ``/metrics`` writes
its own fresh, reads the others' and adds them up. A scrape can therefore
lag another worker by up to a second, but every scrape covers the whole
server, whichever worker the kernel hands it to.
"""

from __future__ import annotations

import json
import logging
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("kmsframe.http")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1


class Metrics:
    """One worker's counters."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.errors: dict[str, int] = {}
        # Set once the deployment is open: () -> (hits, misses).
        self.cache_stats: Callable[[], tuple[int, int]] | None = None

    def record(self, route: str, method: str, status: int, seconds: float,
               error: str | None) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = Histogram()
        hist.observe(seconds)
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1

    def count_error(self, code: str, n: int = 1) -> None:
        self.errors[code] = self.errors.get(code, 0) + n

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy of the counters."""
        hits, misses = self.cache_stats() if self.cache_stats is not None else (0, 0)
        return {
            "requests": [[r, m, s, n] for (r, m, s), n in self.requests.items()],
            "latency": {r: [h.counts, h.sum, h.count] for r, h in self.latency.items()},
            "errors": dict(self.errors),
            "cache": [hits, misses],
        }

    def render(self, snapshots: Iterable[dict[str, Any]] | None = None) -> str:
        """The text exposition of ``snapshots`` summed (default: this worker's)."""
        requests: dict[tuple[str, str, int], int] = {}
        latency: dict[str, list[Any]] = {}
        errors: dict[str, int] = {}
        hits = misses = workers = 0
        for snap in snapshots if snapshots is not None else [self.snapshot()]:
            workers += 1
            for r, m, s, n in snap["requests"]:
                requests[(r, m, s)] = requests.get((r, m, s), 0) + n
            for r, (counts, total, count) in snap["latency"].items():
                acc = latency.setdefault(r, [[0] * (len(BUCKETS) + 1), 0.0, 0])
                acc[0] = [a + b for a, b in zip(acc[0], counts, strict=True)]
                acc[1] += total
                acc[2] += count
            for code, n in snap["errors"].items():
                errors[code] = errors.get(code, 0) + n
            hits += snap["cache"][0]
            misses += snap["cache"][1]
        out: list[str] = [
            "# HELP kmsframe_http_workers Worker processes whose counters are included.",
            "# TYPE kmsframe_http_workers gauge",
            f"kmsframe_http_workers {workers}",
            "# HELP kmsframe_http_requests_total HTTP requests by route, method and status.",
            "# TYPE kmsframe_http_requests_total counter",
        ]
        for (route, method, status), n in sorted(requests.items()):
            out.append(f'kmsframe_http_requests_total{{route="{_esc(route)}",'
                       f'method="{method}",status="{status}"}} {n}')
        out += ["# HELP kmsframe_http_request_duration_seconds Request latency by route.",
                "# TYPE kmsframe_http_request_duration_seconds histogram"]
        for route, (counts, total, count) in sorted(latency.items()):
            labels = f'route="{_esc(route)}"'
            cumulative = 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'kmsframe_http_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                           f'{cumulative}')
            out.append(f"kmsframe_http_request_duration_seconds_sum{{{labels}}} {total!r}")
            out.append(f"kmsframe_http_request_duration_seconds_count{{{labels}}} {count}")
        out += [("# HELP kmsframe_http_errors_total Errors returned to callers, by error code "
                 "(batch items included)."),
                "# TYPE kmsframe_http_errors_total counter"]
        for code, n in sorted(errors.items()):
            out.append(f'kmsframe_http_errors_total{{code="{_esc(code)}"}} {n}')
        out += ["# HELP kmsframe_key_cache_hits_total Working-key cache hits.",
                "# TYPE kmsframe_key_cache_hits_total counter",
                f"kmsframe_key_cache_hits_total {hits}",
                "# HELP kmsframe_key_cache_misses_total Working-key cache misses.",
                "# TYPE kmsframe_key_cache_misses_total counter",
                f"kmsframe_key_cache_misses_total {misses}"]
        return "\n".join(out) + "\n"


class MetricsExchange:
    """Worker snapshots in a shared directory (see the module docstring)."""

    def __init__(self, directory: Path, metrics: Metrics) -> None:
        self.directory = directory
        self.metrics = metrics
        self.pid = os.getpid()
        self.path = directory / f"{self.pid}.json"

    def publish(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.metrics.snapshot()))
        os.replace(tmp, self.path)  # readers never see half a file

    def collect(self) -> list[dict[str, Any]]:
        """Every live worker's snapshot, this worker's fresh."""
        self.publish()
        snapshots = []
        for path in self.directory.glob("*.json"):
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if pid != self.pid and not _alive(pid):
                path.unlink(missing_ok=True)  # a worker that died without cleaning up
                continue
            try:
                snapshots.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # gone or being replaced: its next snapshot counts
        return snapshots

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _esc(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

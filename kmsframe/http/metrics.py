"""Prometheus metrics in the text exposition format, written by hand.

Per worker process: ``kmsframe_http_requests_total{route,method,status}``,
``kmsframe_http_request_duration_seconds`` (a histogram per route),
``kmsframe_http_errors_total{code}`` and the key cache's
``kmsframe_key_cache_hits_total`` / ``_misses_total``. Each worker answers
``/metrics`` with its own counters and a ``worker`` label (its pid), so a
scraper that sums over ``worker`` sees the whole server once it has seen each
worker. Recording is a few dict operations; nothing is formatted until a scrape.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

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
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.errors: dict[str, int] = {}
        self.worker = str(os.getpid())
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

    def render(self) -> str:
        w = self.worker
        out: list[str] = [
            "# HELP kmsframe_http_requests_total HTTP requests by route, method and status.",
            "# TYPE kmsframe_http_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            out.append(f'kmsframe_http_requests_total{{worker="{w}",route="{_esc(route)}",'
                       f'method="{method}",status="{status}"}} {n}')
        out += ["# HELP kmsframe_http_request_duration_seconds Request latency by route.",
                "# TYPE kmsframe_http_request_duration_seconds histogram"]
        for route, hist in sorted(self.latency.items()):
            labels = f'worker="{w}",route="{_esc(route)}"'
            cumulative = 0
            for bound, n in zip((*BUCKETS, float("inf")), hist.counts):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'kmsframe_http_request_duration_seconds_bucket{{{labels},le="{le}"}} '
                           f'{cumulative}')
            out.append(f"kmsframe_http_request_duration_seconds_sum{{{labels}}} {hist.sum!r}")
            out.append(f"kmsframe_http_request_duration_seconds_count{{{labels}}} {hist.count}")
        out += [("# HELP kmsframe_http_errors_total Errors returned to callers, by error code "
                 "(batch items included)."),
                "# TYPE kmsframe_http_errors_total counter"]
        for code, n in sorted(self.errors.items()):
            out.append(f'kmsframe_http_errors_total{{worker="{w}",code="{_esc(code)}"}} {n}')
        if self.cache_stats is not None:
            hits, misses = self.cache_stats()
            out += ["# HELP kmsframe_key_cache_hits_total Working-key cache hits.",
                    "# TYPE kmsframe_key_cache_hits_total counter",
                    f'kmsframe_key_cache_hits_total{{worker="{w}"}} {hits}',
                    "# HELP kmsframe_key_cache_misses_total Working-key cache misses.",
                    "# TYPE kmsframe_key_cache_misses_total counter",
                    f'kmsframe_key_cache_misses_total{{worker="{w}"}} {misses}']
        return "\n".join(out) + "\n"


def _esc(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

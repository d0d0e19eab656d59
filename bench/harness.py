"""What the in-process benchmark scripts share."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``.

    Calls are timed in batches that double up to 2,000, so slow operations
    (an RSA-4096 signature) are not over-sampled and fast ones are not
    dominated by the clock reads.
    """
    n, batch = 0, 1
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed
        batch = min(batch * 2, 2000)

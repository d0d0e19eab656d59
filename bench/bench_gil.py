"""Does each public-key operation release the GIL? And what does it cost?

For each algorithm handle and operation: the cost per call, and the speed of
a pure-Python counter thread while the main thread loops over the call, as a
share of its speed alone (needs two free cores). About 100 %: the library
releases the GIL while it computes (a pool thread runs the call beside the
event loop); about 50 %: it holds it (the two threads take turns). AES-GCM is
the reference for a call that is mostly Python.

    uv run python bench/bench_gil.py [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable

import kmsframe_algo_aes
import kmsframe_algo_ec
import kmsframe_algo_rsa
import kmsframe_algo_sm2

from harness import rate


def _count(seconds: float, busy: Callable[[], object] | None) -> float:
    """Increments per second of a pure-Python counter thread while the main
    thread loops over ``busy`` (or sleeps, for None)."""
    stop = threading.Event()
    n = [0]

    def spin() -> None:
        while not stop.is_set():
            n[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        if busy is None:
            time.sleep(0.005)
        else:
            busy()
    stop.set()
    thread.join()
    return n[0] / seconds


def counter_share(fn: Callable[[], object], seconds: float) -> float:
    """The counter's speed beside ``fn`` ÷ its speed alone, the median of three
    alternating pairs (other load on the machine moves both)."""
    shares = sorted(_count(seconds, fn) / _count(seconds, None) for _ in range(3))
    return shares[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3)
    args = parser.parse_args()
    rsa = {a.id: a for a in kmsframe_algo_rsa.ALGORITHMS}
    algorithms = [rsa["rsa-2048"], rsa["rsa-4096"], kmsframe_algo_ec.EcdsaP256(),
                  kmsframe_algo_ec.Ed25519(), kmsframe_algo_sm2.Sm2(),
                  kmsframe_algo_aes.Aes256Gcm()]
    print(f"{'algorithm':<14}{'operation':<10}{'µs/call':>10}{'counter beside it':>19}")
    for algorithm in algorithms:
        handle = algorithm.load(algorithm.generate(os.urandom))
        message = os.urandom(64)
        calls: dict[str, Callable[[], object]] = {}
        if algorithm.id == "aes-256-gcm":
            calls["encrypt"] = lambda: handle.encrypt(message, b"")
        else:
            signature = handle.sign(message, {})
            calls["sign"] = lambda: handle.sign(message, {})
            calls["verify"] = lambda: handle.verify(message, signature, {})
            if algorithm.id in ("rsa-2048", "rsa-4096", "sm2"):
                body = handle.encrypt(message[:32], b"")
                calls["encrypt"] = lambda: handle.encrypt(message[:32], b"")
                calls["decrypt"] = lambda: handle.decrypt(body, b"")
        for op, fn in calls.items():
            per_call = 1e6 / rate(fn, args.seconds)
            share = counter_share(fn, args.seconds)
            print(f"{algorithm.id:<14}{op:<10}{per_call:>10.1f}{share:>19.0%}")


if __name__ == "__main__":
    main()

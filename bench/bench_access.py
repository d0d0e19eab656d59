"""What access control costs on the in-process encrypt path.

Prints encrypts/s for raw AES-256-GCM (cryptography), the key service as the
system principal, as a bound app (binding lookup), through the audited
``AccessControl.crypto`` wrapper (batched audit record), and for a key with
a rate limit (kms_authorize hook; the node-wide shared bucket, then a
per-process one), with each one's ratio to raw AES-GCM.

    uv run python bench/bench_access.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmsframe.access import conditions
from kmsframe.access.ratelimit import LocalBuckets
from kmsframe.authorization import Principal
from kmsframe.testing import embedded_deployment

PLAINTEXT = b"4111111111111111"  # a card number: the typical payload


def rate(call, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            call()
        n += 1000
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    seconds = parser.parse_args().seconds
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    aad = b"kmsframe/v1\x00" + b"0" * 32 + b"\x0010001"
    raw = rate(lambda: aead.encrypt(os.urandom(12), PLAINTEXT, aad), seconds)

    with tempfile.TemporaryDirectory() as tmp:
        d = embedded_deployment(Path(tmp) / "kms")
        try:
            s = d.service
            s.create_key("k")
            s.create_key("kc")
            app = Principal(id="billing", kind="app", roles=frozenset({"app"}))
            s.bind_app("k", "billing", ["encrypt"])
            s.bind_app("kc", "billing", ["encrypt"])
            s.set_conditions("kc", {"rate_limit": {"per_second": 1e9, "burst": 1e9}})
            access = d.access
            rows = [
                ("raw AES-256-GCM", raw),
                ("service, system principal", rate(lambda: s.encrypt("k", PLAINTEXT), seconds)),
                ("service, bound app", rate(lambda: s.encrypt("k", PLAINTEXT, principal=app),
                                            seconds)),
                ("rate-limited key, node-wide bucket", rate(
                    lambda: s.encrypt("kc", PLAINTEXT, principal=app), seconds)),
            ]
            # The same with the bucket in process memory (one per worker).
            d.plugins.pm.get_plugin(conditions.PLUGIN_NAME).buckets = LocalBuckets()
            rows.append(("rate-limited key, per-process bucket", rate(
                lambda: s.encrypt("kc", PLAINTEXT, principal=app), seconds)))
            # Last: its audit records keep the flusher thread busy for a while.
            rows.append(("audited (AccessControl.crypto)", rate(lambda: access.crypto(
                app, "encrypt", "k", lambda: s.encrypt("k", PLAINTEXT, principal=app)),
                seconds)))
        finally:
            d.close()
    for name, value in rows:
        print(f"{name:<34} {value:>12,.0f} ops/s   {value / raw:5.2f}x raw")


if __name__ == "__main__":
    main()

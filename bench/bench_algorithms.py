"""Operations per second for every algorithm plugin, through the core and raw.

For each algorithm and operation, two figures measured in the same run,
interleaved, best of several rounds: ``core`` is the in-process
:class:`~kmsframe.service.KeyService` call (cache warm, text in and out, version
prefix), ``handle`` is the plugin's own key handle called directly (the library
plus the thin wrapper). Their ratio is what the core adds. Messages and
plaintexts are 64 bytes (32 for public-key encryption).

    uv run python bench/bench_algorithms.py [--seconds 0.5] [--rounds 3] [--only sm2,rsa-2048]
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import rate  # bench/ is on sys.path when a script runs
from kmsframe.ciphertext import wrap_aad
from kmsframe.testing import embedded_deployment

PLUGINS = ("algo_sm4", "algo_sm2", "algo_rsa", "algo_ec", "algo_hmac")

# (algorithm id, purpose, operations)
CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("aes-256-gcm", "encrypt", ("encrypt", "decrypt")),
    ("sm4-gcm", "encrypt", ("encrypt", "decrypt")),
    ("sm4-cbc-hmac-sm3", "encrypt", ("encrypt", "decrypt")),
    ("hmac-sha256", "mac", ("mac", "verify-mac")),
    ("hmac-sm3", "mac", ("mac", "verify-mac")),
    ("ed25519", "sign", ("sign", "verify")),
    ("ecdsa-p256", "sign", ("sign", "verify")),
    ("sm2", "sign", ("sign", "verify")),
    ("sm2", "encrypt", ("encrypt", "decrypt")),
    ("rsa-2048", "sign", ("sign", "verify")),
    ("rsa-2048", "encrypt", ("encrypt", "decrypt")),
    ("rsa-2048-pkcs1v15", "sign", ("sign", "verify")),
    ("rsa-3072", "sign", ("sign", "verify")),
    ("rsa-4096", "sign", ("sign", "verify")),
    ("rsa-4096", "encrypt", ("encrypt", "decrypt")),
]


def build(service: Any, algorithm: str, purpose: str,
          ops: tuple[str, ...]) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(operation, core call, handle call) for one key of ``algorithm``."""
    name = f"bench-{algorithm}-{purpose}"
    service.create_key(name, algorithm=algorithm, purpose=purpose)
    key = service.get_key(name)
    material = service.hsm.unwrap(key.primary.wrapped,
                                  wrap_aad(key.id, key.primary_version, algorithm, purpose))
    handle = service.plugins.algorithm(algorithm).load(material)
    public_key_encryption = not getattr(service.plugins.algorithm(algorithm), "binds_aad", True)
    data = os.urandom(32 if public_key_encryption else 64)
    aad = b"kmsframe/v1\x00" + key.id.encode() + b"\x0010001"
    out = []
    for op in ops:
        if op == "encrypt":
            out.append((op, lambda: service.encrypt(name, data), lambda: handle.encrypt(data, aad)))
        elif op == "decrypt":
            text = service.encrypt(name, data).ciphertext
            body = handle.encrypt(data, aad)
            out.append((op, lambda text=text: service.decrypt(name, text),
                        lambda body=body: handle.decrypt(body, aad)))
        elif op == "sign":
            out.append((op, lambda: service.sign(name, data), lambda: handle.sign(data, {})))
        elif op == "verify":
            text = service.sign(name, data).signature
            raw = base64.b64decode(text[5:])
            out.append((op, lambda text=text: service.verify(name, data, text),
                        lambda raw=raw: handle.verify(data, raw, {})))
        elif op == "mac":
            out.append((op, lambda: service.mac(name, data), lambda: handle.mac(data)))
        elif op == "verify-mac":
            text = service.mac(name, data).mac
            raw = base64.b64decode(text[5:])
            out.append((op, lambda text=text: service.verify_mac(name, data, text),
                        lambda raw=raw: handle.verify(data, raw, {})))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated algorithm ids")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    only = {a for a in args.only.split(",") if a}

    deployment = embedded_deployment(Path(tempfile.mkdtemp(prefix="kms-bench-algo-")),
                                     extra_plugins=PLUGINS)
    service = deployment.service
    rows = []
    for algorithm, purpose, ops in CASES:
        if only and algorithm not in only:
            continue
        for op, core, raw in build(service, algorithm, purpose, ops):
            best_core = best_raw = 0.0
            for _ in range(args.rounds):
                best_raw = max(best_raw, rate(raw, args.seconds))
                best_core = max(best_core, rate(core, args.seconds))
            rows.append((algorithm, op, best_core, best_raw))
            print(f"  measured {algorithm} {op}", flush=True)
    print()
    print(f"best of {args.rounds} rounds of {args.seconds} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'algorithm':<20}{'operation':<12}{'core ops/s':>12}{'µs/op':>10}"
          f"{'handle ops/s':>14}{'core/handle':>13}")
    for algorithm, op, core, raw in rows:
        print(f"{algorithm:<20}{op:<12}{core:>12,.0f}{1e6 / core:>10.1f}{raw:>14,.0f}"
              f"{core / raw:>13.2f}")
    deployment.close()


if __name__ == "__main__":
    main()

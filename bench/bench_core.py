"""In-process encrypt of 64 bytes through the core API vs raw cryptography AESGCM.

Both are measured in the same run, interleaved, best of several rounds, so the
ratio is robust to the machine's load. Goal (issue 2): core ≥ 0.5× raw.

    uv run python bench/bench_core.py [--seconds 1.0] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harness import rate  # bench/ is on sys.path when a script runs
from kmsframe.testing import embedded_deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    deployment = embedded_deployment(Path(tempfile.mkdtemp(prefix="kms-bench-")))
    service = deployment.service
    service.create_key("bench")
    plaintext = os.urandom(64)
    raw = AESGCM(os.urandom(32))
    urandom = os.urandom

    def raw_encrypt() -> bytes:
        nonce = urandom(12)
        return nonce + raw.encrypt(nonce, plaintext, None)

    def core_encrypt() -> object:
        return service.encrypt("bench", plaintext)

    def core_encrypt_context() -> object:
        return service.encrypt("bench", plaintext, {"tenant": "t-1"})

    ciphertext = service.encrypt("bench", plaintext).ciphertext

    def core_decrypt() -> object:
        return service.decrypt("bench", ciphertext)

    cases = {"raw AESGCM encrypt": raw_encrypt, "core encrypt": core_encrypt,
             "core encrypt + context": core_encrypt_context, "core decrypt": core_decrypt}
    best = {name: 0.0 for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            best[name] = max(best[name], rate(fn, args.seconds))
    baseline = best["raw AESGCM encrypt"]
    print(f"{'case':<26}{'ops/s':>12}{'us/op':>9}{'× raw':>8}")
    for name, ops in best.items():
        print(f"{name:<26}{ops:>12,.0f}{1e6 / ops:>9.2f}{ops / baseline:>8.2f}")
    ratio = best["core encrypt"] / baseline
    print(f"\ncore encrypt / raw AESGCM = {ratio:.2f} (goal ≥ 0.50): {'MET' if ratio >= 0.5 else 'NOT MET'}")
    deployment.close()


if __name__ == "__main__":
    main()

"""Unwrap (and wrap) ops/s through the HSM backends: pkcs11 on SoftHSM2 vs soft.

Every backend is measured in the same run, interleaved, best of several
rounds. Also: a service decrypt with a *cold* key cache (every call reloads
the key and unwraps its version through the HSM) against a warm one, and
unwrap from 4 threads (the pkcs11 backend serialises calls per library).

    uv run python bench/bench_hsm.py [--seconds 1.0] [--rounds 3]

Needs the Debian packages softhsm2 and opensc; tokens are made in a temp dir.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness import rate  # bench/ is on sys.path when a script runs
from kmsframe_hsm_pkcs11 import build
from kmsframe_hsm_pkcs11.testing import Realm, deployment_toml, missing_tools
from kmsframe_hsm_soft import SoftHsm

from kmsframe.config import DeploymentConfig
from kmsframe.deployment import Deployment
from kmsframe.secrets import KeyMaterial, Secret
from kmsframe.testing.conformance import AAD


def threaded_rate(fn: Callable[[], object], seconds: float, threads: int) -> float:
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            for _ in range(50):
                fn()
            counts[i] += 50

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    problem = missing_tools()
    if problem:
        raise SystemExit(problem)

    root = Path(tempfile.mkdtemp(prefix="kms-bench-hsm-"))
    realm = Realm(root / "softhsm", ["bench-a", "bench-b"])
    backends = {
        "soft (AES-GCM in process)": SoftHsm(root / "ks.json", unseal_secret=Secret(b"bench"),
                                             scrypt_n=2**10),
        "pkcs11 aes-gcm (SoftHSM2)": build(realm.settings("bench-a", key_label="bench-gcm")),
        "pkcs11 aes-key-wrap-pad (SoftHSM2)": build(realm.settings(
            "bench-a", key_label="bench-kwp", mechanism="aes-key-wrap-pad")),
    }
    for backend in backends.values():
        if backend.id == "pkcs11":
            backend.open()
        backend.initialize()
    material = KeyMaterial(os.urandom(32))
    wrapped = {name: b.wrap(material, AAD) for name, b in backends.items()}

    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for name, backend in backends.items():
            w = wrapped[name]
            for op, fn in (("unwrap", lambda b=backend, w=w: b.unwrap(w, AAD)),
                           ("wrap", lambda b=backend: b.wrap(material, AAD)),
                           ("unwrap x4 threads", None)):
                if fn is None:
                    r = threaded_rate(lambda b=backend, w=w: b.unwrap(w, AAD), args.seconds, 4)
                else:
                    r = rate(fn, args.seconds)
                best[(name, op)] = max(best.get((name, op), 0.0), r)

    soft = "soft (AES-GCM in process)"
    print(f"{'backend':<38} {'operation':<18} {'ops/s':>10} {'µs/op':>8} {'× soft':>7}")
    for (name, op), r in best.items():
        ratio = r / best[(soft, op)]
        print(f"{name:<38} {op:<18} {r:>10,.0f} {1e6 / r:>8.1f} {ratio:>7.2f}")

    # Through the key service: decrypt with the key cache cold vs warm.
    print()
    for mechanism in ("aes-gcm",):
        toml = deployment_toml(root / "deploy", [(realm, "bench-b")], "bench-service",
                               mechanism=mechanism)
        config = DeploymentConfig.load(toml)
        plugins_hsm = build(config.hsm)
        plugins_hsm.open()
        plugins_hsm.initialize()
        plugins_hsm.close()
        with Deployment.open(config) as d:
            d.service.create_key("bench")
            text = d.service.encrypt("bench", os.urandom(64)).ciphertext
            warm = cold = 0.0
            for _ in range(args.rounds):
                warm = max(warm, rate(lambda t=text: d.service.decrypt("bench", t), args.seconds))

                def cold_decrypt(t: str = text) -> object:
                    d.service.cache.invalidate()
                    return d.service.decrypt("bench", t)

                cold = max(cold, rate(cold_decrypt, args.seconds))
            print(f"service decrypt, pkcs11 {mechanism}: warm cache {warm:,.0f} ops/s, "
                  f"cold cache (store read + HSM unwrap each call) {cold:,.0f} ops/s "
                  f"({warm / cold:.0f}× slower cold)")
    for backend in backends.values():
        backend.close()


if __name__ == "__main__":
    main()

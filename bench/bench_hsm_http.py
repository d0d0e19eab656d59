"""HTTP encrypt throughput on a SoftHSM2-backed deployment, key cache warm vs cold.

Starts ``kmsframe serve`` (the HTTP service) twice on loopback over the same
SoftHSM2 token with the ``pkcs11`` backend (AES-GCM): once with the default
key cache (warm: the working key stays unwrapped in memory) and once with a
0.1 ms cache TTL (cold: every request re-reads the key record and unwraps it
in the HSM). wrk POSTs a 64-byte plaintext to /v1/keys/bench/encrypt with an
app's bearer token. Prints req/s and latency of each and the ratio.

    uv run python bench/bench_hsm_http.py [--duration 8] [--connections 32] [--workers 2]

Needs the HTTP service (``kmsframe serve``), wrk, softhsm2 and opensc.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from click.testing import CliRunner
from harness import free_port, stop, wait_up  # bench/ is on sys.path when a script runs
from kmsframe_hsm_pkcs11.testing import Realm, deployment_toml, missing_tools

from kmsframe.cli import main as cli

ROOT_TOKEN = "bench-root-token"


def post(url: str, token: str, body: dict, method: str = "POST") -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wrk(url: str, script: Path, connections: int, duration: int) -> tuple[float, str, str]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True,
                         check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw error responses:\n" + out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = re.search(r"\s50%\s+(\S+)", out)[1]  # type: ignore[index]
    p99 = re.search(r"\s99%\s+(\S+)", out)[1]  # type: ignore[index]
    return rps, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    problem = missing_tools() or (None if shutil.which("wrk") else "wrk is not installed")
    if problem:
        sys.exit(problem)
    if "serve" not in cli.commands:  # type: ignore[attr-defined]
        sys.exit("this checkout has no HTTP service ('kmsframe serve')")

    root = Path(tempfile.mkdtemp(prefix="kms-bench-hsm-http-"))
    realm = Realm(root / "softhsm", ["bench"])
    best: dict[str, tuple[float, str, str]] = {}
    for case, keys in (("warm", ""), ("cold", "cache_ttl_seconds = 0.0001")):
        toml = deployment_toml(root / case, [(realm, "bench")], f"mk-{case}", keys=keys)
        result = CliRunner().invoke(cli, ["--config", str(toml), "init"])
        assert result.exit_code == 0, result.output
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(root / f"{case}.log", "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "kmsframe.cli", "--config", str(toml), "serve",
                 "--port", str(port), "--workers", str(args.workers)],
                env={**os.environ, "KMSFRAME_ROOT_TOKEN": ROOT_TOKEN},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_up(url + "/healthz")
            post(url + "/v1/keys", ROOT_TOKEN, {"name": "bench"})
            app = post(url + "/v1/apps", ROOT_TOKEN, {"name": "bench-app"})
            token = app["token"]
            # Only apps bound to a key may use it.
            post(url + f"/v1/keys/bench/apps/{app['id']}", ROOT_TOKEN,
                 {"operations": ["encrypt"]}, method="PUT")
            body = json.dumps({"plaintext": base64.b64encode(os.urandom(64)).decode()})
            post(url + "/v1/keys/bench/encrypt", token, json.loads(body))
            script = root / f"{case}.lua"
            script.write_text('wrk.method = "POST"\n'
                              'wrk.headers["Content-Type"] = "application/json"\n'
                              f'wrk.headers["Authorization"] = "Bearer {token}"\n'
                              f"wrk.body = {json.dumps(body)}\n")
            target = url + "/v1/keys/bench/encrypt"
            wrk(target, script, args.connections, 2)  # warm-up
            for _ in range(args.rounds):
                run = wrk(target, script, args.connections, args.duration)
                if run[0] > best.get(case, (0.0, "", ""))[0]:
                    best[case] = run
        finally:
            stop(server)
    print(f"HTTP encrypt, pkcs11 aes-gcm on SoftHSM2, {args.workers} workers, "
          f"wrk -t1 -c{args.connections} -d{args.duration}s, best of {args.rounds}")
    for case, (rps, p50, p99) in best.items():
        print(f"  {case:<5} cache: {rps:>9,.0f} req/s   p50 {p50:>8}   p99 {p99:>8}")
    print(f"  warm / cold: {best['warm'][0] / best['cold'][0]:.1f}x")


if __name__ == "__main__":
    main()

"""HTTP throughput and latency of kmsframe against the transport ceiling, with wrk.

Starts, on loopback with kmsframe serve's uvicorn settings (uvloop, its
httptools protocol subclass, ``--workers`` processes, no access log):

0. ``raw``     — a framework-free ASGI callable (bench/echo_app.py), for reference
   (also under uvicorn's stock httptools protocol, to show what
   kmsframe's one-write-per-response protocol gains);
1. ``echo``    — a bare starlette endpoint (bench/echo_app.py): the ceiling;
2. ``encrypt`` — ``kmsframe serve --dev``: POST /v1/keys/bench/encrypt with a
   64-byte plaintext and an app's bearer token (the full path: auth, routing,
   permission, JSON, AES-256-GCM, response);
3. ``batch``   — the same endpoint with ``{"items": [100 x 64 bytes]}``;
4. ``ranged``  — encrypt as in 2. on a key with a source-range condition (the
   ``kms_authorize`` hook runs, no rate limit);
5. ``limited`` — the same with a rate limit too high to refuse anything instead:
   against ``ranged``, the cost of the node-wide bucket the workers share.

Each is warmed up, then measured with wrk (Lua script for the POST body) at
the same threads/connections/duration. Prints req/s, p50, p99, items/s and
the ratios, and checks them against the goals.

    uv run python bench/bench_http.py [--duration 10] [--connections 64] [--threads 1]
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
import time
import urllib.request
from pathlib import Path

from harness import free_port, stop, wait_up  # bench/ is on sys.path when a script runs

HERE = Path(__file__).resolve().parent
GOALS = {"encrypt_rps": 20_000, "encrypt_ratio": 0.7, "encrypt_p99_ms": 10.0,
         "batch_items_per_s": 300_000}


def call(url: str, token: str, body: dict, method: str = "POST") -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def lua_script(directory: Path, name: str, body: bytes, token: str | None) -> Path:
    path = directory / f"{name}.lua"
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if token:
        headers += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    path.write_text('wrk.method = "POST"\n' + headers +
                    f"wrk.body = {json.dumps(body.decode())}\n")
    return path


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, *, threads: int, connections: int, duration: int) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99,
            "non2xx": int(non2xx[1]) if non2xx else 0, "socket_errors": errors[1] if errors else ""}


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="kms-bench-"))
    env = {**os.environ, "KMSFRAME_ROOT_TOKEN": "bench-root-token"}
    results: dict[str, dict] = {}
    plaintext = base64.b64encode(os.urandom(64)).decode()
    procs = []
    try:
        echo_port, raw_port, kms_port = free_port(), free_port(), free_port()
        stock_port = free_port()
        # kmsframe serve's settings: its httptools protocol (one write per
        # response, kmsframe/http/protocol.py), uvloop, no access log.
        uvicorn_opts = ["--workers", str(args.workers), "--loop", "uvloop", "--http",
                        "kmsframe.http.protocol:KmsHttpToolsProtocol", "--no-access-log",
                        "--log-level", "warning", "--no-proxy-headers", "--no-server-header",
                        "--ws", "none"]
        stock_opts = [o if o != "kmsframe.http.protocol:KmsHttpToolsProtocol" else "httptools"
                      for o in uvicorn_opts]
        procs.append(start([sys.executable, "-m", "uvicorn", "echo_app:raw", "--app-dir",
                            str(HERE), "--port", str(stock_port), *stock_opts], env,
                           tmp / "stock.log"))
        procs.append(start([sys.executable, "-m", "uvicorn", "echo_app:app", "--app-dir",
                            str(HERE), "--port", str(echo_port), *uvicorn_opts], env,
                           tmp / "echo.log"))
        procs.append(start([sys.executable, "-m", "uvicorn", "echo_app:raw", "--app-dir",
                            str(HERE), "--port", str(raw_port), *uvicorn_opts], env,
                           tmp / "raw.log"))
        procs.append(start([sys.executable, "-m", "kmsframe.cli", "--data-dir",
                            str(tmp / "data"), "serve", "--dev", "--port", str(kms_port),
                            "--workers", str(args.workers), "--log-level", "warning"], env,
                           tmp / "kms.log"))
        kms = f"http://127.0.0.1:{kms_port}"
        wait_up(kms + "/healthz")
        time.sleep(1)
        call(kms + "/v1/keys", "bench-root-token", {"name": "bench"})
        app = call(kms + "/v1/apps", "bench-root-token", {"name": "bench-app"})
        token = app["token"]
        # Only bound apps may use a key (the binding check is on the measured path).
        call(kms + f"/v1/keys/bench/apps/{app['id']}", "bench-root-token",
             {"operations": ["encrypt"]}, method="PUT")
        probe = call(kms + "/v1/keys/bench/encrypt", token, {"plaintext": plaintext})
        assert probe["version"] == 10001
        for name, conditions in (("ranged", {"source_ranges": ["127.0.0.0/8"]}),
                                 ("limited", {"rate_limit": {"per_second": 1e9, "burst": 1e9}})):
            call(kms + "/v1/keys", "bench-root-token", {"name": name})
            call(kms + f"/v1/keys/{name}/apps/{app['id']}", "bench-root-token",
                 {"operations": ["encrypt"]}, method="PUT")
            call(kms + f"/v1/keys/{name}/conditions", "bench-root-token",
                 {"conditions": conditions}, method="PUT")
        echo_url = f"http://127.0.0.1:{echo_port}/echo"
        raw_url = f"http://127.0.0.1:{raw_port}/"
        stock_url = f"http://127.0.0.1:{stock_port}/"
        for url in (echo_url, raw_url, stock_url):
            for _ in range(100):
                try:
                    urllib.request.urlopen(urllib.request.Request(url, data=b"{}"))
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.1)

        single = json.dumps({"plaintext": plaintext}).encode()
        batch = json.dumps({"items": [{"plaintext": plaintext}] * args.batch}).encode()
        cases = [
            ("stock", stock_url, lua_script(tmp, "stock", single, None)),
            ("raw", raw_url, lua_script(tmp, "raw", single, None)),
            ("echo", echo_url, lua_script(tmp, "echo", single, None)),
            ("encrypt", kms + "/v1/keys/bench/encrypt", lua_script(tmp, "enc", single, token)),
            ("batch", kms + "/v1/keys/bench/encrypt", lua_script(tmp, "batch", batch, token)),
            ("ranged", kms + "/v1/keys/ranged/encrypt", lua_script(tmp, "rng", single, token)),
            ("limited", kms + "/v1/keys/limited/encrypt", lua_script(tmp, "lim", single, token)),
        ]
        opts = {"threads": args.threads, "connections": args.connections}
        for name, url, script in cases:
            wrk(url, script, duration=args.warmup, **opts)
        # Rounds alternate between the cases so that a burst of load from
        # something else on the machine hits them all alike; the median counts.
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in cases}
        for _ in range(args.rounds):
            for name, url, script in cases:
                runs[name].append(wrk(url, script, duration=args.duration, **opts))
        for name, measured in runs.items():
            results[name] = sorted(measured, key=lambda r: r["rps"])[len(measured) // 2]
    finally:
        for proc in procs:
            stop(proc)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    raw, echo, enc, bat = results["raw"], results["echo"], results["encrypt"], results["batch"]
    items = bat["rps"] * args.batch
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, median of "
          f"{args.rounds}; "
          f"{args.workers} uvicorn workers (uvloop, kmsframe's httptools protocol); "
          f"{os.cpu_count()} cores; "
          f"64-byte plaintexts")
    # Other work on the machine shares the 2 cores with wrk and the workers.
    print(f"1-min load average before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(f"{'case':<26}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for label, r in (("raw ASGI, stock httptools", results["stock"]),
                     ("raw ASGI (uvicorn only)", raw), ("echo (starlette ceiling)", echo),
                     ("encrypt", enc),
                     (f"batch encrypt x{args.batch}", bat),
                     ("encrypt, source-range key", results["ranged"]),
                     ("encrypt, rate-limited key", results["limited"])):
        print(f"{label:<26}{r['rps']:>10,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['non2xx']:>9}")
    ratio = enc["rps"] / echo["rps"]
    print(f"encrypt / starlette echo: {ratio:.2f}   encrypt / raw ASGI: "
          f"{enc['rps'] / raw['rps']:.2f}")
    print(f"batch items/s: {items:,.0f} ({items / enc['rps']:.1f}x single-call encrypts/s)")
    for label, slower, faster in (("source-range key / encrypt", "ranged", "encrypt"),
                                  ("rate-limited / source-range key", "limited", "ranged")):
        a, b = results[slower]["rps"], results[faster]["rps"]
        print(f"{label}: {a / b:.2f} ({1e6 * (1 / a - 1 / b) * args.workers:+.1f} us of "
              f"worker time per request)")
    checks = [
        (f"encrypt >= {GOALS['encrypt_rps']:,} req/s", enc["rps"] >= GOALS["encrypt_rps"]),
        (f"encrypt >= {GOALS['encrypt_ratio']}x ceiling", ratio >= GOALS["encrypt_ratio"]),
        (f"encrypt p99 <= {GOALS['encrypt_p99_ms']} ms", enc["p99_ms"] <= GOALS["encrypt_p99_ms"]),
        (f"batch >= {GOALS['batch_items_per_s']:,} items/s",
         items >= GOALS["batch_items_per_s"]),
        ("no non-2xx responses", all(r["non2xx"] == 0 for r in results.values())),
    ]
    for label, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

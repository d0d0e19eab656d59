"""AES encrypt latency while public-key operations run on the same server.

Starts ``kmsframe serve`` on loopback twice in one run: with slow operations
in the crypto thread pool (the default) and with ``--crypto-threads 0`` (every
operation on the event loop, the behaviour before). For each, wrk drives AES
encrypt alone, then AES encrypt while a second wrk keeps a steady stream of
public-key calls going (RSA-4096 signs, SM2 signs, batches of RSA-4096 signs).
Prints AES encrypt req/s, p50 and p99 per case, the background calls' rate,
and the p99 ratio inline ÷ pool.

    uv run python bench/bench_mixed_load.py [--duration 5] [--rounds 2] [--workers 1]
        [--connections 16] [--background 4] [--batch 20] [--threads 0,N]
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

from bench_algorithms_http import PLUGINS, ROOT, _ms, bind, call
from harness import free_port, stop

# (label, algorithm, purpose, operation, items per request; 0: a single call)
BACKGROUND = [
    ("rsa-4096 sign", "rsa-4096", "sign", "sign", 0),
    ("sm2 sign", "sm2", "sign", "sign", 0),
    ("rsa-4096 sign batch", "rsa-4096", "sign", "sign", -1),  # -1: --batch items
]


def lua(tmp: Path, name: str, token: str, body: bytes) -> Path:
    script = tmp / f"{name}.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {token}"\n'
                      f"wrk.body = {json.dumps(body.decode())}\n")
    return script


def start_wrk(url: str, script: Path, connections: int, duration: int) -> subprocess.Popen:
    return subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                             "--timeout", "30s", "-s", str(script), url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
            "p50": _ms(re.search(r"\s50%\s+(\S+)", out)[1]),  # type: ignore[index]
            "p99": _ms(re.search(r"\s99%\s+(\S+)", out)[1]),  # type: ignore[index]
            "non2xx": int(non2xx[1]) if non2xx else 0}


class Server:
    def __init__(self, tmp: Path, config: Path, threads: int | None, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cli = [sys.executable, "-m", "kmsframe.cli", "--config", str(config), "serve",
               "--port", str(self.port), "--workers", str(workers)]
        if threads is not None:
            cli += ["--crypto-threads", str(threads)]
        self.log = open(tmp / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(cli, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     env={**os.environ, "KMSFRAME_ROOT_TOKEN": ROOT})
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        time.sleep(0.5 * workers)

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def measure(srv: Server, tmp: Path, args: argparse.Namespace) -> dict[str, tuple[dict, dict]]:
    """Case label → (AES encrypt figures, background figures), best AES p99 of the rounds."""
    app = call(srv.url + "/v1/apps", ROOT, {"name": "bench"})
    token = app["token"]
    message = base64.b64encode(os.urandom(64)).decode()
    call(srv.url + "/v1/keys", ROOT, {"name": "aes"})
    bind(srv.url, "aes", app["id"], "encrypt")
    aes = lua(tmp, f"aes-{srv.port}", token, json.dumps({"plaintext": message}).encode())
    background: list[tuple[str, str, Path]] = []
    for label, algorithm, purpose, op, items in BACKGROUND:
        name = f"{algorithm}-{purpose}"
        try:
            call(srv.url + "/v1/keys", ROOT, {"name": name, "algorithm": algorithm,
                                              "purpose": purpose})
            bind(srv.url, name, app["id"], purpose)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # the batch case reuses the key
                raise
        n = args.batch if items < 0 else items
        body = {"items": [{"message": message}] * n} if n else {"message": message}
        slug = re.sub(r"\W+", "-", label)
        background.append((label, f"{srv.url}/v1/keys/{name}/{op}",
                           lua(tmp, f"{slug}-{srv.port}", token, json.dumps(body).encode())))
    aes_url = f"{srv.url}/v1/keys/aes/encrypt"
    # Warm-up: every key loaded and cached in every worker.
    result(start_wrk(aes_url, aes, args.connections, 1))
    for _, url, script in background:
        result(start_wrk(url, script, args.background, 1))
    best: dict[str, tuple[dict, dict]] = {}
    for _ in range(args.rounds):
        cases = [("AES alone", None, None)] + [(label, url, s) for label, url, s in background]
        for label, url, script in cases:
            bg = start_wrk(url, script, args.background, args.duration + 2) \
                if url is not None else None
            if bg is not None:
                time.sleep(1)  # the stream is running before AES is measured
            fg = result(start_wrk(aes_url, aes, args.connections, args.duration))
            other = result(bg) if bg is not None else {}
            if label not in best or fg["p99"] < best[label][0]["p99"]:
                best[label] = (fg, other)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16, help="AES encrypt connections")
    parser.add_argument("--background", type=int, default=4,
                        help="connections of the public-key stream")
    parser.add_argument("--batch", type=int, default=20, help="items per sign batch")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", default="0,default",
                        help="--crypto-threads values to compare (0: inline; 'default')")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="kms-bench-mixed-"))
    (tmp / "unseal.secret").write_text(base64.urlsafe_b64encode(os.urandom(24)).decode())
    modes = [None if t == "default" else int(t) for t in args.threads.split(",")]
    results: dict[str, dict[str, tuple[dict, dict]]] = {}
    for threads in modes:
        mode = "inline" if threads == 0 else f"pool({threads or 'default'})"
        data = tmp / mode.replace("(", "-").replace(")", "")
        data.mkdir()
        config = data / "kms.toml"
        config.write_text(
            f'[deployment]\ndata_dir = "{data}"\nplugins = {json.dumps(PLUGINS)}\n\n'
            f'[hsm]\nbackend = "soft"\nkeystore = "{data / "keystore.json"}"\n'
            f'unseal_secret = "$file:{tmp / "unseal.secret"}"\n\n'
            f'[storage]\nbackend = "sql"\nurl = "sqlite:///{data / "kms.db"}"\n')
        subprocess.run([sys.executable, "-m", "kmsframe.cli", "--config", str(config), "init"],
                       check=True, capture_output=True)
        srv = Server(tmp, config, threads, args.workers)
        try:
            results[mode] = measure(srv, tmp, args)
        finally:
            srv.stop()
        print(f"  {mode} done", flush=True)
    print(f"\nAES-256-GCM encrypt, wrk -t1 -c{args.connections} -d{args.duration}s (best p99 of "
          f"{args.rounds} rounds), alongside wrk -c{args.background} of the background calls "
          f"(batches of {args.batch}); {args.workers} uvicorn worker(s); {os.cpu_count()} cores "
          f"shared with both wrk; load average {os.getloadavg()[0]:.1f}")
    print(f"{'background':<22}{'mode':<12}{'AES req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'bg req/s':>10}{'bg p99 ms':>11}{'non-2xx':>9}")
    failed = False
    labels = list(next(iter(results.values())))
    for label in labels:
        for mode, by_label in results.items():
            fg, bg = by_label[label]
            non2xx = fg["non2xx"] + bg.get("non2xx", 0)
            failed |= non2xx > 0
            bg_rps = f"{bg['rps']:,.0f}" if bg else "-"
            bg_p99 = f"{bg['p99']:.1f}" if bg else "-"
            print(f"{label:<22}{mode:<12}{fg['rps']:>10,.0f}{fg['p50']:>9.2f}{fg['p99']:>9.2f}"
                  f"{bg_rps:>10}{bg_p99:>11}{non2xx:>9}")
    if "inline" in results and len(results) > 1:
        print("\nAES encrypt p99, inline ÷ pool (higher: the pool protects AES more):")
        for mode in results:
            if mode == "inline":
                continue
            for label in labels:
                ratio = results["inline"][label][0]["p99"] / results[mode][label][0]["p99"]
                print(f"  {label:<22}{mode:<12}{ratio:>8.1f}×")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

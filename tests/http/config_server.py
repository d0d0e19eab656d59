"""A real ``kmsframe serve`` from a deployment TOML (for tests that need
plugins, stores or settings beyond the embedded ``--dev`` default)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import free_port


def soft_config(data: Path, plugins: list[str], *, storage_url: str | None = None,
                hsm_dir: Path | None = None, extra: str = "") -> Path:
    """Write ``data/kms.toml``: the soft HSM (its keystore in ``hsm_dir``, which
    several nodes may share), the SQL store, ``plugins``; return its path."""
    hsm_dir = hsm_dir or data
    data.mkdir(parents=True, exist_ok=True)
    secret = hsm_dir / "unseal.secret"
    if not secret.exists():
        secret.write_text(base64.urlsafe_b64encode(os.urandom(24)).decode())
    config = data / "kms.toml"
    config.write_text(f"""
[deployment]
data_dir = "{data}"
plugins = {plugins!r}

[hsm]
backend = "soft"
keystore = "{hsm_dir / 'keystore.json'}"
unseal_secret = "$file:{secret}"
scrypt_n = 1024

[storage]
backend = "sql"
url = "{storage_url or f'sqlite:///{data / "kms.db"}'}"
""".replace("'", '"') + extra)
    return config


def init(config: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kmsframe.cli", "--config", str(config),
                           "init"], capture_output=True)
    assert done.returncode == 0, done.stderr


def serve(config: Path, root_token: str, *extra: str,
          workers: int = 1) -> tuple[subprocess.Popen, str]:
    """Start the server on a free loopback port; return it once every worker is up."""
    port = free_port()
    log = config.parent / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kmsframe.cli", "--config", str(config), "serve",
             "--port", str(port), "--workers", str(workers), *extra],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "KMSFRAME_ROOT_TOKEN": root_token, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                time.sleep(0.3 * (workers - 1))  # the others start beside the first
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def stop(proc: subprocess.Popen, config: Path) -> None:
    """SIGTERM, then check the server logged no traceback."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "Traceback" not in (config.parent / "server.log").read_text(errors="replace")

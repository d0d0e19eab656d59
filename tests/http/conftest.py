"""A real ``kmsframe serve`` on loopback for the HTTP tests.

``KmsServer`` starts the CLI as a subprocess on a free port with its own data
directory, waits for ``/healthz``, keeps the server's log in a file, and on
``stop()`` sends SIGTERM and checks the process exits cleanly. Every response
the tests receive is kept (``seen``) so the leak checks can grep them too.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT_TOKEN = "kmsf_root_test-" + "r" * 40
CRYPTO_OPS = frozenset({"encrypt", "decrypt", "rewrap", "datakey", "sign", "verify", "mac",
                        "verify-mac", "public-key"})
OPS_BY_PURPOSE = {"encrypt": ["datakey", "decrypt", "encrypt", "rewrap"],
                  "sign": ["sign", "verify"], "mac": ["mac", "verify"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def crypto_as_test_app(url: str, root_token: str,
                       verify: object = True) -> Callable[[httpx.Request], None]:
    """An httpx request hook: a root client's crypto calls go out as a test app.

    Only apps bound to a key may use it, and the root token is no app. The
    hook creates one app on first use and binds it to each key it meets with
    every operation the key's purpose allows.
    """
    state: dict[str, object] = {"bound": set()}
    root = {"Authorization": f"Bearer {root_token}"}

    def hook(request: httpx.Request) -> None:
        parts = request.url.path.split("/")
        if request.headers.get("authorization") != f"Bearer {root_token}" or \
                len(parts) != 5 or parts[2] != "keys" or parts[4] not in CRYPTO_OPS:
            return
        if "app" not in state:
            r = httpx.post(f"{url}/v1/apps", json={"name": "conftest-app"}, headers=root,
                           timeout=30, verify=verify)  # type: ignore[arg-type]
            assert r.status_code == 201, r.text
            state["app"] = (r.json()["id"], r.json()["token"])
        app_id, app_token = state["app"]  # type: ignore[misc]
        bound: set[str] = state["bound"]  # type: ignore[assignment]
        if parts[3] not in bound:
            key = httpx.get(f"{url}/v1/keys/{parts[3]}", headers=root, timeout=30,
                            verify=verify)  # type: ignore[arg-type]
            if key.status_code == 200:
                r = httpx.put(f"{url}/v1/keys/{parts[3]}/apps/{app_id}",
                              json={"operations": OPS_BY_PURPOSE[key.json()["purpose"]]},
                              headers=root, verify=verify, timeout=30)  # type: ignore[arg-type]
                assert r.status_code == 200, f"binding {parts[3]} failed: {r.text}"
                bound.add(parts[3])
        request.headers["authorization"] = f"Bearer {app_token}"

    return hook


class KmsServer:
    def __init__(self, data_dir: Path, *, workers: int = 1, extra: tuple[str, ...] = (),
                 scheme: str = "http", root_token: str | None = ROOT_TOKEN) -> None:
        self.root_token = root_token
        self.data_dir = data_dir
        self.workers = workers
        self.extra = extra
        self.scheme = scheme
        self.port = free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}-server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: list[bytes] = []
        self._as_app: Callable[[httpx.Request], None] | None = None
        self._people: object = None

    @property
    def people(self):  # type: ignore[no-untyped-def]
        """Administrators with TOTP for this server (see ``people.py``)."""
        if self._people is None:
            from .people import People

            self._people = People(self)
        return self._people

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, verify: object = True) -> KmsServer:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KMSFRAME_ROOT_TOKEN", None)
        if self.root_token is not None:
            env["KMSFRAME_ROOT_TOKEN"] = self.root_token
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kmsframe.cli", "--data-dir", str(self.data_dir),
                 "serve", "--dev", "--port", str(self.port), "--workers", str(self.workers),
                 "--log-level", "info", *self.extra],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if wait:
            self.wait_ready(verify=verify)
        return self

    def wait_ready(self, timeout: float = 60.0, verify: object = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1, verify=verify).status_code == 200:
                    # Every worker must be up, not only the first one.
                    time.sleep(0.3 * self.workers)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM; returns the exit status (0, or -SIGTERM: a single uvicorn
        process re-raises the signal after its graceful shutdown)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        self.proc = None
        assert "Application shutdown complete" in self.log()
        return 0 if code == -signal.SIGTERM else code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, token: str | None = ROOT_TOKEN, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        def keep(response: httpx.Response) -> None:
            response.read()
            self.seen.append(response.content)

        return httpx.Client(base_url=self.url, headers=headers, timeout=30,
                            event_hooks={"request": [self.as_test_app(kwargs.get("verify", True))],
                                         "response": [keep]},
                            **kwargs)  # type: ignore[arg-type]

    def as_test_app(self, verify: object = True) -> Callable[[httpx.Request], None]:
        if self._as_app is None:
            self._as_app = crypto_as_test_app(self.url, ROOT_TOKEN, verify)
        return self._as_app


@pytest.fixture(scope="session", params=["fast-path", "full-stack"])
def server(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[KmsServer]:
    """The shared server, twice: with the crypto fast path and without it,
    so both ways through the app are held to the same tests."""
    extra = ("--no-fast-path",) if request.param == "full-stack" else ()
    srv = KmsServer(tmp_path_factory.mktemp("kms") / "data", extra=extra).start()
    yield srv
    if srv.proc is not None:
        srv.stop()


@pytest.fixture()
def client(server: KmsServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture()
def key(client: httpx.Client, request: pytest.FixtureRequest) -> str:
    """A fresh encryption key named after the test."""
    name = "k-" + request.node.name.replace("[", "-").replace("]", "")[:100]
    r = client.post("/v1/keys", json={"name": name})
    assert r.status_code == 201, r.text
    return name


_key_numbers = iter(range(1_000_000))


def make_key(client: httpx.Client, algorithm: str, purpose: str | None = None) -> str:
    """A fresh key of ``algorithm`` (named after it), created through ``client``."""
    name = f"{algorithm}-{next(_key_numbers)}"
    body = {"name": name, "algorithm": algorithm}
    if purpose:
        body["purpose"] = purpose
    r = client.post("/v1/keys", json=body)
    assert r.status_code == 201, r.text
    return name


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) >= {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]

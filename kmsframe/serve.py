"""``kmsframe serve``: run the HTTP service under uvicorn (uvloop + httptools).

The parent process checks the options, prepares the embedded deployment when
``--dev`` is given (data directory, unseal secret, master key), and starts
uvicorn with N worker processes. Each worker imports :func:`app_factory`,
which reads the serve options from the environment (``KMSFRAME_SERVE``) and
builds the app; the app's lifespan opens the worker's own deployment.
SIGTERM/SIGINT make uvicorn stop accepting, finish in-flight requests, run
the lifespan shutdown (closing the deployment) and exit.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import ssl
import sys
from pathlib import Path
from typing import Any

import click

ROOT_TOKEN_ENV = "KMSFRAME_ROOT_TOKEN"
SPEC_ENV = "KMSFRAME_SERVE"
DEV_WARNING = """\
************************************************************************
*  kmsframe serve --dev: DEVELOPMENT MODE — NOT FOR PRODUCTION          *
*  software HSM (not a hardware HSM); its unseal secret is stored       *
*  in plain text beside the keystore in:                                *
*    {dir}
*  Anyone who can read that directory can decrypt every key.            *
************************************************************************"""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_factory() -> Any:
    """Build the ASGI app in a worker process (uvicorn ``factory=True``)."""
    from .config import DeploymentConfig, embedded_config
    from .deployment import Deployment
    from .http import HttpSettings, build_app
    from .secrets import Secret

    spec = json.loads(os.environ[SPEC_ENV])
    logging.basicConfig(level=spec.get("log_level", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    root = os.environ.get(ROOT_TOKEN_ENV)

    def config() -> DeploymentConfig:
        if spec["config"]:
            return DeploymentConfig.load(spec["config"])
        return embedded_config(Path(spec["data_dir"]))

    loaded = config()
    if root is None:
        configured = loaded.http.get("root_token")
        root = configured.reveal_text() if isinstance(configured, Secret) else configured
    settings = HttpSettings(
        max_body_bytes=int(spec.get("max_body_bytes") or loaded.http.get("max_body_bytes")
                           or HttpSettings().max_body_bytes),
        root_token=Secret.from_text(root) if root else None,
        fast_path=spec.get("fast_path", True),
        crypto_threads=_crypto_threads(spec.get("crypto_threads"),
                                       loaded.http.get("crypto_threads"), spec.get("workers")))
    return build_app(lambda: Deployment.open(loaded), settings)


def _crypto_threads(option: int | None, configured: Any, workers: int | None) -> int | None:
    """``--crypto-threads``, else ``[http] crypto_threads``, else the cores shared
    out among the workers (at least one each): more threads than cores only
    take CPU from the event loops (see docs/performance.md)."""
    value = option if option is not None else configured
    if value is None:
        return max(1, (os.cpu_count() or 1) // (workers or 1))
    if type(value) is not int or value < 0:
        from .errors import ConfigurationError

        raise ConfigurationError("http.crypto_threads must be a whole number, 0 or more")
    return value


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8200, show_default=True, type=int)
@click.option("--workers", default=None, type=int, help="Worker processes (default: CPU cores).")
@click.option("--data-dir", "serve_data_dir", default=None,
              help="Where the embedded deployment keeps its state (overrides the global option).")
@click.option("--config", "serve_config", default=None,
              help="Deployment TOML file (overrides the global option).")
@click.option("--tls-cert", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--tls-key", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--tls-client-ca", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Require client certificates signed by this CA (mutual TLS).")
@click.option("--insecure-no-tls", is_flag=True,
              help="Allow listening beyond loopback without TLS (tokens travel in clear).")
@click.option("--dev", is_flag=True,
              help="Embedded development default: create and initialise the data directory, "
                   "auto-unseal the soft HSM, print an admin token.")
@click.option("--root-token", envvar=ROOT_TOKEN_ENV, default=None,
              help=f"The admin bearer token (or ${ROOT_TOKEN_ENV}).")
@click.option("--max-body-bytes", default=None, type=int, help="Largest request body accepted.")
@click.option("--no-fast-path", is_flag=True, hidden=True,
              help="Serve the crypto routes through the full starlette stack (for tests).")
@click.option("--crypto-threads", default=None, type=click.IntRange(min=0),
              help="Threads per worker for slow public-key operations (default: the "
                   "cores divided among the workers; 0 runs them on the event loop).")
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int | None,
          serve_data_dir: str | None, serve_config: str | None, tls_cert: str | None,
          tls_key: str | None, tls_client_ca: str | None, insecure_no_tls: bool, dev: bool,
          root_token: str | None, max_body_bytes: int | None, no_fast_path: bool,
          crypto_threads: int | None, access_log: bool,
          log_level: str) -> None:
    """Serve the HTTP API (see docs/http.md)."""
    import uvicorn

    from .cli import initialize

    obj = ctx.obj
    if serve_data_dir is not None:
        obj.data_dir = Path(serve_data_dir)
    if serve_config is not None:
        obj.config_path = serve_config
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    if not tls_cert and not _loopback(host) and not insecure_no_tls:
        raise click.UsageError(
            f"refusing to listen on {host} without TLS: give --tls-cert/--tls-key, or "
            "--insecure-no-tls if something in front terminates TLS")
    if dev:
        if not obj.embedded:
            raise click.UsageError("--dev runs the embedded deployment; drop --config")
        click.echo(DEV_WARNING.format(dir=obj.data_dir.resolve()), err=True)
        shown = initialize(obj, {})
        if shown.get("created"):
            click.echo(f"initialised: master key {shown['master_key_id']}", err=True)
        if not root_token:
            root_token = "kmsf_root_" + secrets.token_urlsafe(32)
            click.echo(f"admin token (set {ROOT_TOKEN_ENV} to fix it): {root_token}", err=True)
    if root_token:
        os.environ[ROOT_TOKEN_ENV] = root_token
    elif not obj.config().http.get("root_token"):
        click.echo(f"note: no admin token (--root-token or ${ROOT_TOKEN_ENV}); only app "
                   "tokens will be accepted", err=True)
    os.environ[SPEC_ENV] = json.dumps({
        "config": str(Path(obj.config_path).resolve()) if obj.config_path else None,
        "data_dir": str(obj.data_dir.resolve()),
        "max_body_bytes": max_body_bytes, "log_level": log_level,
        "fast_path": not no_fast_path, "crypto_threads": crypto_threads,
        "workers": workers or os.cpu_count() or 1})
    n = workers or os.cpu_count() or 1
    scheme = "https" if tls_cert else "http"
    click.echo(f"kmsframe: serving on {scheme}://{host}:{port} with {n} worker(s)", err=True)
    sys.stderr.flush()
    uvicorn.run(
        "kmsframe.serve:app_factory", factory=True, host=host, port=port, workers=n,
        loop="uvloop",
        http="kmsframe.http.protocol:" + (
            "MutualTlsHttpToolsProtocol" if tls_client_ca else "KmsHttpToolsProtocol"),
        ws="none", lifespan="on", access_log=access_log,
        # proxy_headers off: X-Forwarded-For from an untrusted peer must not
        # become the client address that access checks and audit see.
        log_level=log_level, server_header=False, proxy_headers=False, timeout_graceful_shutdown=10,
        ssl_certfile=tls_cert, ssl_keyfile=tls_key, ssl_ca_certs=tls_client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls_client_ca else ssl.CERT_NONE,
    )

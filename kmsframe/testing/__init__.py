"""Test kit for kmsframe and its plugin authors.

* :mod:`kmsframe.testing.conformance` — suites that every HSM, algorithm and
  storage plugin runs unchanged (subclass and provide a fixture);
* :func:`embedded_deployment` — a throwaway embedded deployment for tests.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ..config import DeploymentConfig
from ..deployment import Deployment


def embedded_config(data_dir: Path, *, storage_url: str | None = None,
                    extra_plugins: tuple[str, ...] = (), keys: dict | None = None,
                    extra: dict | None = None) -> DeploymentConfig:
    """An embedded deployment config in ``data_dir`` with a fast test KDF.

    ``extra`` adds top-level tables (``access``, ``audit``, ``approvals``...);
    unless given, ``[access]`` uses cheap Argon2 parameters to keep tests fast.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = data_dir / "unseal.secret"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(24))
    return DeploymentConfig.from_mapping({
        "deployment": {"data_dir": str(data_dir),
                       "plugins": ["hsm_soft", "algo_aes", "storage_sql", *extra_plugins]},
        "hsm": {"backend": "soft", "keystore": str(data_dir / "keystore.json"),
                "unseal_secret": f"$file:{secret}", "scrypt_n": 2**10},
        "storage": {"backend": "sql", "url": storage_url or f"sqlite:///{data_dir / 'kms.db'}"},
        "keys": keys or {},
        "access": {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1},
        **(extra or {}),
    })


def embedded_deployment(data_dir: Path, **kwargs: object) -> Deployment:
    """Initialise (if needed) and open an embedded deployment in ``data_dir``."""
    config = embedded_config(data_dir, **kwargs)  # type: ignore[arg-type]
    from ..plugins import PluginHost

    plugins = PluginHost()
    plugins.load_entry_points(config.plugins)
    hsm = plugins.build_hsm(config.hsm)
    hsm.initialize()
    hsm.close()
    return Deployment.open(config, plugins=plugins)

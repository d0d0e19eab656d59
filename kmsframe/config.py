"""Deployment configuration: a TOML file naming plugins and their settings.

Secrets are never written inline: a string value ``"$env:NAME"`` is read from
the environment and ``"$file:/path"`` from a file (trailing newline removed),
and either becomes a :class:`kmsframe.secrets.Secret` that prints redacted.
``"$$..."`` escapes a literal dollar. ``deployment.data_dir`` is relative to
the configuration file; relative paths in plugin settings (a keystore, a SQLite
file) are relative to the data directory.

Example::

    [deployment]
    data_dir = "./data"
    plugins = ["hsm_soft", "algo_aes", "storage_sql"]   # entry-point names

    [hsm]
    backend = "soft"
    keystore = "./data/keystore.json"
    unseal_secret = "$file:./data/unseal.secret"

    [storage]
    backend = "sql"
    url = "sqlite:///./data/kms.db"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigurationError
from .secrets import Secret

DEFAULT_PLUGINS = ("hsm_soft", "algo_aes", "storage_sql")


def resolve_secrets(value: Any, *, where: str = "") -> Any:
    """Replace ``$env:``/``$file:`` references, recursively, by Secrets."""
    if isinstance(value, str):
        if value.startswith("$$"):
            return value[1:]
        if value.startswith("$env:"):
            name = value[5:]
            if name not in os.environ:
                raise ConfigurationError(
                    f"{where}: environment variable {name} is not set"
                )
            return Secret.from_text(os.environ[name])
        if value.startswith("$file:"):
            path = Path(value[6:]).expanduser()
            try:
                return Secret(path.read_bytes().rstrip(b"\r\n"))
            except OSError as exc:
                raise ConfigurationError(f"{where}: cannot read secret file {path}: {exc.strerror}")
        return value
    if isinstance(value, Mapping):
        return {k: resolve_secrets(v, where=f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


@attrs.frozen(slots=True)
class DeploymentConfig:
    """A parsed deployment: which plugins, and each section's settings."""

    plugins: tuple[str, ...]
    data_dir: Path
    hsm: Mapping[str, Any]
    storage: Mapping[str, Any]
    algorithms: tuple[str, ...] | None = None  # None: all registered
    audit_sinks: tuple[Mapping[str, Any], ...] = ()
    keys: Mapping[str, Any] = attrs.field(factory=dict)
    http: Mapping[str, Any] = attrs.field(factory=dict)
    access: Mapping[str, Any] = attrs.field(factory=dict)  # [access]: logins, sessions
    approvals: Mapping[str, Any] = attrs.field(factory=dict)  # [approvals.<operation>]
    audit: Mapping[str, Any] = attrs.field(factory=dict)  # [audit] minus its sinks
    source: Path | None = None

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], *, source: Path | None = None
    ) -> "DeploymentConfig":
        base = source.parent if source is not None else Path.cwd()
        deployment = dict(raw.get("deployment", {}))
        data_dir = Path(deployment.get("data_dir", "./data")).expanduser()
        if not data_dir.is_absolute():
            data_dir = (base / data_dir).resolve()
        plugins = deployment.get("plugins", list(DEFAULT_PLUGINS))
        if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
            raise ConfigurationError("deployment.plugins must be a list of plugin names")
        for section in ("hsm", "storage"):
            if not isinstance(raw.get(section), Mapping) or "backend" not in raw[section]:
                raise ConfigurationError(f"[{section}] needs a 'backend' (for example backend = \"...\")")
        algorithms = raw.get("algorithms", {}).get("enabled")
        audit = raw.get("audit", {})
        return cls(
            plugins=tuple(plugins),
            data_dir=data_dir,
            hsm=_with_base(resolve_secrets(raw["hsm"], where="hsm"), data_dir),
            storage=_with_base(resolve_secrets(raw["storage"], where="storage"), data_dir),
            algorithms=None if algorithms is None else tuple(algorithms),
            audit_sinks=tuple(
                _with_base(resolve_secrets(s, where="audit.sinks"), data_dir)
                for s in audit.get("sinks", [])
            ),
            keys=dict(raw.get("keys", {})),
            http=resolve_secrets(dict(raw.get("http", {})), where="http"),
            access=dict(raw.get("access", {})),
            approvals=dict(raw.get("approvals", {})),
            audit={k: v for k, v in audit.items() if k != "sinks"},
            source=source,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "DeploymentConfig":
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"configuration file {path} does not exist")
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"configuration file {path} is not valid TOML: {exc}")
        return cls.from_mapping(raw, source=path.resolve())


def _with_base(settings: Mapping[str, Any], data_dir: Path) -> dict[str, Any]:
    """Give each plugin the deployment's data directory for relative paths."""
    out = dict(settings)
    out.setdefault("data_dir", str(data_dir))
    return out


def embedded_config(data_dir: Path, *, unseal_secret_file: Path | None = None) -> DeploymentConfig:
    """The embedded default: soft HSM, SQLite, AES, all in ``data_dir``."""
    data_dir = data_dir.resolve()
    secret_file = unseal_secret_file or data_dir / "unseal.secret"
    return DeploymentConfig.from_mapping(
        {
            "deployment": {"data_dir": str(data_dir), "plugins": list(DEFAULT_PLUGINS)},
            "hsm": {
                "backend": "soft",
                "keystore": str(data_dir / "keystore.json"),
                "unseal_secret": f"$file:{secret_file}",
            },
            "storage": {"backend": "sql", "url": f"sqlite:///{data_dir / 'kms.db'}"},
        }
    )

"""Throwaway SoftHSM2 tokens for tests: real tokens, created by the tests.

Used by this plugin's tests and offered to anyone testing a deployment on
SoftHSM2 (``from kmsframe_hsm_pkcs11.testing import Realm``).

Each :class:`Realm` is its own directory with its own ``softhsm2.conf``, its
own token directory and its own copy of ``libsofthsm2.so``. The copy matters:
a PKCS#11 library is loaded once per process and SoftHSM2 reads its
configuration (and scans its tokens) only in C_Initialize, so a separate file
gives each realm a separate library instance — as two HSMs with two vendor
modules would be. Tokens must be created before the realm's module is first
loaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kmsframe.secrets import Secret

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
PIN = "4711-user-pin"
SO_PIN = "4711-so-pin"


def missing_tools() -> str | None:
    """Why SoftHSM2 tests cannot run here, or None."""
    problems = []
    if shutil.which("softhsm2-util") is None:
        problems.append("softhsm2-util is not on PATH")
    if shutil.which("pkcs11-tool") is None:
        problems.append("pkcs11-tool is not on PATH")
    if module_path() is None:
        override = os.environ.get("KMSFRAME_SOFTHSM2_MODULE")
        problems.append(f"KMSFRAME_SOFTHSM2_MODULE={override} does not exist" if override else
                        f"libsofthsm2.so is in none of {', '.join(MODULE_CANDIDATES)}")
    if not problems:
        return None
    return ("SoftHSM2 tests need the Debian packages softhsm2 and opensc "
            "(apt-get install -y softhsm2 opensc; see scripts/apt-packages.txt): "
            + "; ".join(problems))


def module_path() -> str | None:
    override = os.environ.get("KMSFRAME_SOFTHSM2_MODULE")
    for candidate in ((override,) if override else MODULE_CANDIDATES):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class Realm:
    """A SoftHSM2 installation of its own: conf, token dir, module copy."""

    def __init__(self, root: Path, labels: list[str], *, extra_conf: str = "") -> None:
        self.root = root
        (root / "tokens").mkdir(parents=True)
        self.conf = root / "softhsm2.conf"
        self.conf.write_text(
            f"directories.tokendir = {root / 'tokens'}\n"
            "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
            + extra_conf)
        source = module_path()
        assert source is not None
        self.module = str(root / "libsofthsm2.so")
        shutil.copyfile(source, self.module)
        self.env = {"SOFTHSM2_CONF": str(self.conf)}
        self.pin_file = root / "user.pin"
        self.pin_file.write_text(PIN + "\n")
        for label in labels:
            self.init_token(label)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), env={**os.environ, **self.env}, check=True,
                              capture_output=True, text=True, timeout=60)

    def init_token(self, label: str) -> None:
        self.run("softhsm2-util", "--init-token", "--free", "--label", label,
                 "--so-pin", SO_PIN, "--pin", PIN)

    def token_dir(self, label: str) -> Path:
        """The directory holding ``label``'s files (to break it on purpose)."""
        for directory in (self.root / "tokens").iterdir():
            if label.encode() in (directory / "token.object").read_bytes():
                return directory
        raise LookupError(label)

    def list_objects(self, label: str) -> str:
        return self.run("pkcs11-tool", "--module", self.module, "--token-label", label,
                        "--list-objects", "--login", "--pin", PIN).stdout

    def settings(self, *labels: str, **extra: Any) -> dict[str, Any]:
        """An ``[hsm]`` table as the deployment would hand it over (PIN resolved)."""
        table: dict[str, Any] = {
            "backend": "pkcs11", "module": self.module, "module_env": dict(self.env),
            "pin": Secret.from_text(PIN), "retry_seconds": 0.2,
        }
        if len(labels) == 1:
            table["token_label"] = labels[0]
        else:
            table["tokens"] = list(labels)
        table.update(extra)
        return table


def deployment_toml(data_dir: Path, tokens: list[tuple[Realm, str]], key_label: str,
                    *, mechanism: str = "aes-gcm", keys: str = "") -> Path:
    """Write a deployment TOML using these tokens (PIN by ``$file:``); return its path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "[deployment]", f'data_dir = "{data_dir}"',
        'plugins = ["hsm_pkcs11", "algo_aes", "storage_sql"]', "",
        "[hsm]", 'backend = "pkcs11"', f'pin = "$file:{tokens[0][0].pin_file}"',
        f'key_label = "{key_label}"', f'mechanism = "{mechanism}"', "retry_seconds = 0.2", "",
    ]
    for realm, label in tokens:
        lines += ["[[hsm.tokens]]", f'label = "{label}"', f'module = "{realm.module}"',
                  f'module_env = {{ SOFTHSM2_CONF = "{realm.conf}" }}', ""]
    lines += ["[storage]", 'backend = "sql"', f'url = "sqlite:///{data_dir / "kms.db"}"', ""]
    if keys:
        lines += ["[keys]", keys, ""]
    path = data_dir / "kms.toml"
    path.write_text("\n".join(lines))
    return path


def pair_settings(a: Realm, b: Realm, key_label: str) -> dict[str, Any]:
    """An ``[hsm]`` table for token kms-a in realm ``a`` and kms-b in realm ``b``."""
    settings = a.settings("kms-a", key_label=key_label)
    settings.pop("token_label")
    settings.pop("module_env")
    settings["tokens"] = [
        {"label": "kms-a", "module": a.module, "module_env": a.env},
        {"label": "kms-b", "module": b.module, "module_env": b.env},
    ]
    return settings

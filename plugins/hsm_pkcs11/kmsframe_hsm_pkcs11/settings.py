"""The ``[hsm]`` table of a ``backend = "pkcs11"`` deployment, parsed and checked.

Example (one token)::

    [hsm]
    backend = "pkcs11"
    module = "/usr/lib/softhsm/libsofthsm2.so"
    token_label = "kms-a"
    pin = "$env:KMS_HSM_PIN"           # $env: or $file: only, never inline
    key_label = "kmsframe-mk"
    mechanism = "aes-gcm"              # or "aes-key-wrap-pad"

Several tokens holding the same master key (redundancy), each optionally with
its own module, PIN and module environment::

    tokens = ["kms-a", "kms-b"]
    # or
    [[hsm.tokens]]
    label = "kms-a"
    [[hsm.tokens]]
    label = "kms-b"
    module = "/opt/other/libpkcs11.so"
    pin = "$file:/run/secrets/kms-b.pin"

``module_env`` is a table of environment variables set before a module is
loaded (SoftHSM2 reads ``SOFTHSM2_CONF`` when it initialises).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kmsframe.errors import ConfigurationError
from kmsframe.secrets import Secret

MECHANISMS = ("aes-gcm", "aes-key-wrap-pad")
DEFAULT_KEY_LABEL = "kmsframe-mk"
_KNOWN = {
    "backend", "data_dir", "module", "token_label", "tokens", "pin", "key_label",
    "mechanism", "module_env", "retry_seconds",
}


@attrs.frozen(slots=True)
class TokenSpec:
    """One token: where its library is, how to find it, how to log in."""

    label: str
    module: str
    pin: Secret = attrs.field(repr=False)
    module_env: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Pkcs11Settings:
    tokens: tuple[TokenSpec, ...]
    key_label: str = DEFAULT_KEY_LABEL
    mechanism: str = "aes-gcm"
    # How long a failed token is left alone before the next reconnect attempt.
    retry_seconds: float = 5.0


def _pin(value: Any, where: str) -> Secret:
    if not isinstance(value, Secret):
        raise ConfigurationError(
            f"hsm: {where} must be a $env: or $file: reference, never written inline")
    return value


def _env(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigurationError(f"hsm: {where} must be a table of strings")
    return dict(value)


def parse(settings: Mapping[str, Any]) -> Pkcs11Settings:
    """Check the ``[hsm]`` table; every mistake is a ConfigurationError naming it."""
    unknown = set(settings) - _KNOWN
    if unknown:
        raise ConfigurationError(f"hsm: unknown settings {', '.join(sorted(unknown))}")
    module = settings.get("module")
    env = _env(settings.get("module_env"), "module_env")
    default_pin = settings.get("pin")
    raw_tokens = settings.get("tokens")
    if raw_tokens is None:
        if "token_label" not in settings:
            raise ConfigurationError("hsm: set token_label (or tokens = [...] for several)")
        raw_tokens = [settings["token_label"]]
    elif "token_label" in settings:
        raise ConfigurationError("hsm: set either token_label or tokens, not both")
    if not isinstance(raw_tokens, list) or not raw_tokens:
        raise ConfigurationError("hsm: tokens must be a non-empty list")
    specs = []
    for i, raw in enumerate(raw_tokens):
        entry: Mapping[str, Any] = {"label": raw} if isinstance(raw, str) else raw
        if not isinstance(entry, Mapping) or not isinstance(entry.get("label"), str) \
                or not entry["label"]:
            raise ConfigurationError(f"hsm: tokens[{i}] needs a label")
        extra = set(entry) - {"label", "module", "pin", "module_env"}
        if extra:
            raise ConfigurationError(f"hsm: tokens[{i}] has unknown settings {sorted(extra)}")
        token_module = entry.get("module", module)
        if not isinstance(token_module, str) or not token_module:
            raise ConfigurationError(f"hsm: tokens[{i}] has no module (set hsm.module)")
        pin = entry.get("pin", default_pin)
        if pin is None:
            raise ConfigurationError(f"hsm: token {entry['label']!r} has no pin")
        specs.append(TokenSpec(
            label=entry["label"], module=token_module, pin=_pin(pin, f"tokens[{i}].pin"),
            module_env={**env, **_env(entry.get("module_env"), f"tokens[{i}].module_env")}))
    labels = [(s.module, s.label) for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigurationError("hsm: a token is listed twice")
    mechanism = settings.get("mechanism", "aes-gcm")
    if mechanism not in MECHANISMS:
        raise ConfigurationError(
            f"hsm: mechanism must be one of {', '.join(MECHANISMS)}, not {mechanism!r}")
    key_label = settings.get("key_label", DEFAULT_KEY_LABEL)
    if not isinstance(key_label, str) or not 1 <= len(key_label) <= 64:
        raise ConfigurationError("hsm: key_label must be 1-64 characters")
    retry = settings.get("retry_seconds", 5.0)
    if not isinstance(retry, (int, float)) or retry < 0:
        raise ConfigurationError("hsm: retry_seconds must be a number >= 0")
    return Pkcs11Settings(tokens=tuple(specs), key_label=key_label, mechanism=mechanism,
                          retry_seconds=float(retry))

"""A software HSM: master keys in a keystore file sealed under an unseal key.

THIS IS NOT A HARDWARE SECURITY MODULE. The master keys are in this process's
memory while unsealed. Use it for development, tests and deployments whose
risk assessment accepts that; use ``hsm_pkcs11`` for a real HSM.

Settings (``[hsm]`` with ``backend = "soft"``):

* ``keystore`` — path of the keystore file (JSON, see below);
* ``unseal_secret`` — a passphrase (``$env:``/``$file:``); the unseal key is
  derived from it with scrypt; **or**
* ``unseal_shares`` — a list of M-of-N Shamir shares of a random unseal key;
* neither — the HSM opens *sealed* and refuses to serve until ``unseal()``.

Keystore file (``format`` 1)::

    {"format": 1, "kind": "kmsframe-soft-hsm",
     "protection": {"method": "scrypt", "salt": b64, "n": 32768, "r": 8, "p": 1}
                 | {"method": "shamir", "threshold": M, "shares": N},
     "check": b64(nonce || AES-256-GCM(unseal key, "kmsframe-soft-hsm-check")),
     "current": "<master key id>",
     "master_keys": [{"id": ..., "created_at": ...,
                      "sealed": b64(nonce || AES-256-GCM(unseal key, MK, aad=id))}]}

A wrapped working key is ``nonce(12) || AES-256-GCM(MK, WK, aad)``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets as _random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

import kmsframe
from kmsframe.errors import ConfigurationError, HsmSealed, IntegrityError, InvalidRequest
from kmsframe.model import WrappedKey
from kmsframe.providers import HsmStatus
from kmsframe.secrets import KeyMaterial, Secret

from . import shares as shamir

log = logging.getLogger(__name__)
BACKEND_ID = "soft"
KEYSTORE_FORMAT = 1
_CHECK = b"kmsframe-soft-hsm-check"
WARNING = (
    "the software HSM is NOT a hardware security module: master keys live in process "
    "memory while unsealed; use the pkcs11 backend for production"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:12], blob[12:], aad)


class SoftHsm:
    """The ``soft`` HSM backend."""

    id = BACKEND_ID
    hardware = False

    def __init__(
        self,
        keystore: Path,
        *,
        unseal_secret: Secret | None = None,
        unseal_shares: Sequence[Secret] = (),
        scrypt_n: int = 2**15,
    ) -> None:
        self.keystore = keystore
        self._secret = unseal_secret
        self._shares = list(unseal_shares)
        self._scrypt_n = scrypt_n
        self._master_keys: dict[str, AESGCM] = {}
        self._current: str | None = None
        self._unseal_key: KeyMaterial | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SoftHsm(keystore={str(self.keystore)!r}, sealed={self.sealed})"

    # -- lifecycle -------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        return self._current is None

    def initialize(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Create the keystore with a first master key, if it does not exist.

        ``options``: ``{"shares": N, "threshold": M}`` seals under a random
        unseal key split into Shamir shares (returned once, under
        ``"shares"``); otherwise the configured ``unseal_secret`` is used.
        Returns what the operator must be shown: the master key id (and shares).
        """
        options = dict(options or {})
        if self.keystore.exists():
            self.open()
            return {"master_key_id": self._current, "created": False}
        shown: dict[str, Any] = {"created": True}
        if options.get("shares"):
            count, threshold = int(options["shares"]), int(options.get("threshold", 0))
            unseal_key = KeyMaterial(_random.token_bytes(32))
            share_list = shamir.split(unseal_key, threshold, count)
            protection: dict[str, Any] = {"method": "shamir", "threshold": threshold, "shares": count}
            shown["shares"] = share_list
        else:
            if self._secret is None:
                raise ConfigurationError("hsm: set unseal_secret (or ask for shares) to initialise")
            salt = _random.token_bytes(16)
            protection = {"method": "scrypt", "salt": _b64(salt), "n": self._scrypt_n, "r": 8, "p": 1}
            unseal_key = self._derive(protection, self._secret)
        mk_id = self._new_mk_id()
        mk = _random.token_bytes(32)
        document = {
            "format": KEYSTORE_FORMAT,
            "kind": "kmsframe-soft-hsm",
            "protection": protection,
            "check": _b64(_seal(unseal_key.reveal(), _CHECK, b"check")),
            "current": mk_id,
            "master_keys": [
                {"id": mk_id, "created_at": time.time(),
                 "sealed": _b64(_seal(unseal_key.reveal(), mk, mk_id.encode()))}
            ],
        }
        self._write(document)
        self._unseal_with_key(unseal_key, document)
        shown["master_key_id"] = mk_id
        return shown

    def open(self) -> None:
        log.warning(WARNING)
        if not self.keystore.exists():
            raise ConfigurationError(
                f"hsm: keystore {self.keystore} does not exist; run 'kmsframe init' first")
        if self._secret is not None or self._shares:
            self.unseal(secret=self._secret, shares=self._shares)

    def unseal(self, *, secret: Secret | None = None, shares: Sequence[Secret] = ()) -> None:
        """Unseal with the passphrase or enough shares; a wrong one raises HsmSealed."""
        document = self._read()
        protection = document["protection"]
        if protection["method"] == "scrypt":
            if secret is None:
                raise HsmSealed("the HSM needs its unseal secret")
            key = self._derive(protection, secret)
        else:
            if len(shares) < protection["threshold"]:
                raise HsmSealed(f"the HSM needs {protection['threshold']} unseal shares")
            key = shamir.combine(list(shares))
        self._unseal_with_key(key, document)

    def seal(self) -> None:
        with self._lock:
            self._master_keys.clear()
            self._current = None
            self._unseal_key = None

    def close(self) -> None:
        self.seal()

    def status(self) -> HsmStatus:
        return HsmStatus(backend=self.id, ready=not self.sealed, sealed=self.sealed,
                         hardware=False, master_key_id=self._current, detail=WARNING)

    # -- the HSM's work ----------------------------------------------------------

    def wrap(self, material: KeyMaterial, aad: bytes) -> WrappedKey:
        current = self._current
        if current is None:
            raise HsmSealed()
        nonce = os.urandom(12)
        blob = nonce + self._master_keys[current].encrypt(nonce, material.reveal(), aad)
        return WrappedKey(hsm=self.id, master_key_id=current, blob=blob)

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> KeyMaterial:
        if self._current is None:
            raise HsmSealed()
        if wrapped.hsm != self.id:
            raise IntegrityError(log_detail=f"wrapped by HSM backend {wrapped.hsm!r}")
        mk = self._master_keys.get(wrapped.master_key_id)
        if mk is None:
            self._reload()  # another process may have added a master key
            mk = self._master_keys.get(wrapped.master_key_id)
            if mk is None:
                raise IntegrityError(log_detail=f"unknown master key {wrapped.master_key_id!r}")
        try:
            return KeyMaterial(mk.decrypt(wrapped.blob[:12], wrapped.blob[12:], aad))
        except (InvalidTag, ValueError):
            raise IntegrityError(log_detail="a wrapped key failed to unwrap") from None

    def random(self, n: int) -> bytes:
        if not isinstance(n, int) or not 0 < n <= 4096:
            raise InvalidRequest("random length must be between 1 and 4096 bytes")
        return _random.token_bytes(n)

    def generate_master_key(self) -> str:
        """Add a new master key and make it current (old ones still unwrap)."""
        with self._lock:
            if self._unseal_key is None:
                raise HsmSealed()
            document = self._read()
            mk_id = self._new_mk_id()
            document["master_keys"].append({
                "id": mk_id, "created_at": time.time(),
                "sealed": _b64(_seal(self._unseal_key.reveal(), _random.token_bytes(32),
                                     mk_id.encode())),
            })
            document["current"] = mk_id
            self._write(document)
            self._load_master_keys(self._unseal_key, document)
            return mk_id

    # -- internals -----------------------------------------------------------------

    def _derive(self, protection: Mapping[str, Any], secret: Secret) -> KeyMaterial:
        kdf = Scrypt(salt=base64.b64decode(protection["salt"]), length=32,
                     n=protection["n"], r=protection["r"], p=protection["p"])
        return KeyMaterial(kdf.derive(secret.reveal()))

    def _unseal_with_key(self, key: KeyMaterial, document: Mapping[str, Any]) -> None:
        try:
            _open(key.reveal(), base64.b64decode(document["check"]), b"check")
        except InvalidTag:
            raise HsmSealed("the unseal secret or shares are wrong") from None
        with self._lock:
            self._load_master_keys(key, document)
            self._unseal_key = key

    def _load_master_keys(self, key: KeyMaterial, document: Mapping[str, Any]) -> None:
        loaded = {}
        for entry in document["master_keys"]:
            try:
                raw = _open(key.reveal(), base64.b64decode(entry["sealed"]), entry["id"].encode())
            except InvalidTag:
                raise IntegrityError(log_detail=f"master key {entry['id']} failed its check") from None
            loaded[entry["id"]] = AESGCM(raw)
        self._master_keys = loaded
        self._current = document["current"]

    def _reload(self) -> None:
        with self._lock:
            if self._unseal_key is not None:
                self._load_master_keys(self._unseal_key, self._read())

    def _read(self) -> dict[str, Any]:
        try:
            document = json.loads(self.keystore.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"hsm: cannot read keystore {self.keystore}: {exc}") from None
        if document.get("format") != KEYSTORE_FORMAT or document.get("kind") != "kmsframe-soft-hsm":
            raise ConfigurationError(f"hsm: {self.keystore} is not a soft HSM keystore of format 1")
        return document

    def _write(self, document: Mapping[str, Any]) -> None:
        """Atomic replace: a crash leaves the old or the new keystore, never half."""
        self.keystore.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.keystore.with_name(self.keystore.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.keystore)

    @staticmethod
    def _new_mk_id() -> str:
        return time.strftime("mk-%Y%m%d-", time.gmtime()) + _random.token_hex(4)


def build(settings: Mapping[str, Any]) -> SoftHsm:
    """Factory for ``[hsm] backend = "soft"``."""
    known = {"backend", "data_dir", "keystore", "unseal_secret", "unseal_shares", "scrypt_n"}
    unknown = set(settings) - known
    if unknown:
        raise ConfigurationError(f"hsm: unknown settings {', '.join(sorted(unknown))}")
    # Relative paths are relative to the deployment's data directory.
    keystore = Path(settings["data_dir"]) / Path(settings.get("keystore") or "keystore.json")
    secret = settings.get("unseal_secret")
    if secret is not None and not isinstance(secret, Secret):
        raise ConfigurationError(
            "hsm: unseal_secret must be a $env: or $file: reference, never inline")
    shares = settings.get("unseal_shares", [])
    if not all(isinstance(s, Secret) for s in shares):
        raise ConfigurationError("hsm: unseal_shares must be $env: or $file: references")
    return SoftHsm(keystore, unseal_secret=secret, unseal_shares=shares,
                   scrypt_n=int(settings.get("scrypt_n", 2**15)))


@kmsframe.hookimpl
def kms_register_hsm_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(BACKEND_ID, build)

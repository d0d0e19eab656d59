"""The audit sealing key: drawn from the HSM, stored wrapped by the master key.

Stored document (kind ``"audit_seal_key"``, id = key id, ``format`` 1)::

    {"format": 1, "id": "sk-...", "created_at": ...,
     "wrapped": {"hsm": ..., "mk": ..., "blob": b64}}

plus kind ``"audit_seal_key"`` id ``"current"`` naming the current key id.
Why not a MAC inside the HSM itself: the HsmBackend contract offers wrap and
unwrap, not a MAC, and a PKCS#11 token's non-extractable HMAC key would need
a new hook every backend must implement. Wrapping a dedicated key under the
master key gives the property that matters — no seal can be forged or
checked without the HSM — with the contract we have; a backend can later
offer in-HSM sealing without changing the log format (seals name their key).
"""

from __future__ import annotations

import base64
import secrets as _random
import time

from ..errors import AlreadyExists, IntegrityError
from ..model import WrappedKey
from ..providers import HsmBackend, Storage
from ..secrets import KeyMaterial

KIND = "audit_seal_key"
FORMAT = 1


def _aad(key_id: str) -> bytes:
    return b"kmsframe/audit-seal-key/v1\x00" + key_id.encode("ascii")


class SealingKeys:
    def __init__(self, storage: Storage, hsm: HsmBackend) -> None:
        self.storage = storage
        self.hsm = hsm
        self._cache: dict[str, KeyMaterial] = {}

    def current(self) -> tuple[str, KeyMaterial]:
        """The current sealing key (created on first use)."""
        pointer = self.storage.get(KIND, "current")
        if pointer is None:
            key_id = "sk-" + _random.token_hex(8)
            material = KeyMaterial(self.hsm.random(32))
            wrapped = self.hsm.wrap(material, _aad(key_id))
            self.storage.put(KIND, key_id, {
                "format": FORMAT, "id": key_id, "created_at": time.time(),
                "wrapped": {"hsm": wrapped.hsm, "mk": wrapped.master_key_id,
                            "blob": base64.b64encode(wrapped.blob).decode("ascii")}},
                expected_revision=0)
            try:
                self.storage.put(KIND, "current", {"format": FORMAT, "id": key_id},
                                 expected_revision=0)
            except AlreadyExists:  # another worker won; use theirs
                pass
            pointer = self.storage.get(KIND, "current")
            assert pointer is not None
        key_id = pointer.data["id"]
        return key_id, self.get(key_id)

    def get(self, key_id: str) -> KeyMaterial:
        cached = self._cache.get(key_id)
        if cached is not None:
            return cached
        doc = self.storage.get(KIND, key_id)
        if doc is None or doc.data.get("format") != FORMAT:
            raise IntegrityError(log_detail=f"audit sealing key {key_id!r} is missing")
        w = doc.data["wrapped"]
        material = self.hsm.unwrap(
            WrappedKey(hsm=w["hsm"], master_key_id=w["mk"], blob=base64.b64decode(w["blob"])),
            _aad(key_id))
        self._cache[key_id] = material
        return material

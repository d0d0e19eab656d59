"""Keys to and from their stored form: JSON documents with a format version.

Stored records name algorithms and HSM backends by stable ids only. A record
with a newer format than this code knows is refused rather than misread.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from .errors import IntegrityError
from .model import (
    HistoryEntry,
    Key,
    KeyStatus,
    KeyVersion,
    Purpose,
    RotationPolicy,
    VersionState,
    WrappedKey,
)

KEY_FORMAT = 1
KIND_KEY = "key"


def key_to_document(key: Key) -> dict[str, Any]:
    return {
        "format": KEY_FORMAT,
        "id": key.id,
        "name": key.name,
        "algorithm": key.algorithm,
        "purpose": key.purpose.value,
        "created_at": key.created_at,
        "status": key.status.value,
        "primary_version": key.primary_version,
        "min_decryption_version": key.min_decryption_version,
        "rotation_policy": None
        if key.rotation_policy is None
        else {
            "period_seconds": key.rotation_policy.period_seconds,
            "notice_seconds": key.rotation_policy.notice_seconds,
        },
        "next_rotation_at": key.next_rotation_at,
        "deletion_at": key.deletion_at,
        "description": key.description,
        "labels": dict(key.labels),
        "versions": [_version_to_dict(v) for v in key.versions],
        "history": [
            {k: v for k, v in (
                ("at", h.at), ("action", h.action), ("actor", h.actor), ("version", h.version),
                ("from", h.from_state), ("to", h.to_state), ("reason", h.reason),
            ) if v is not None}
            for h in key.history
        ],
    }


def key_summary(key: Key) -> dict[str, Any]:
    """The stored form minus what callers need not see: blobs, history, format."""
    doc = key_to_document(key)
    del doc["format"], doc["history"]
    for version in doc["versions"]:
        del version["wrapped"]
        version["version"] = version.pop("number")
        version["primary"] = version["version"] == key.primary_version
    return doc


def _version_to_dict(v: KeyVersion) -> dict[str, Any]:
    return {
        "number": v.number,
        "state": v.state.value,
        "created_at": v.created_at,
        "activated_at": v.activated_at,
        "expired_at": v.expired_at,
        "destroyed_at": v.destroyed_at,
        "wrapped": None
        if v.wrapped is None
        else {
            "hsm": v.wrapped.hsm,
            "mk": v.wrapped.master_key_id,
            "blob": base64.b64encode(v.wrapped.blob).decode("ascii"),
        },
        "public_key": v.public_key,
    }


def key_from_document(doc: Mapping[str, Any], revision: int) -> Key:
    fmt = doc.get("format")
    if fmt != KEY_FORMAT:
        raise IntegrityError(log_detail=f"key record format {fmt!r} is not supported")
    try:
        policy = doc.get("rotation_policy")
        return Key(
            id=doc["id"],
            name=doc["name"],
            algorithm=doc["algorithm"],
            purpose=Purpose(doc["purpose"]),
            created_at=doc["created_at"],
            status=KeyStatus(doc["status"]),
            primary_version=doc["primary_version"],
            min_decryption_version=doc["min_decryption_version"],
            versions=tuple(_version_from_dict(v) for v in doc["versions"]),
            rotation_policy=None if policy is None else RotationPolicy(**policy),
            next_rotation_at=doc.get("next_rotation_at"),
            deletion_at=doc.get("deletion_at"),
            description=doc.get("description", ""),
            labels=dict(doc.get("labels", {})),
            history=tuple(
                HistoryEntry(
                    at=h["at"], action=h["action"], actor=h["actor"], version=h.get("version"),
                    from_state=h.get("from"), to_state=h.get("to"), reason=h.get("reason"),
                )
                for h in doc.get("history", [])
            ),
            revision=revision,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(log_detail=f"malformed key record: {exc!r}") from None


def _version_from_dict(d: Mapping[str, Any]) -> KeyVersion:
    w = d.get("wrapped")
    return KeyVersion(
        number=d["number"],
        state=VersionState(d["state"]),
        created_at=d["created_at"],
        activated_at=d.get("activated_at"),
        expired_at=d.get("expired_at"),
        destroyed_at=d.get("destroyed_at"),
        wrapped=None
        if w is None
        else WrappedKey(hsm=w["hsm"], master_key_id=w["mk"], blob=base64.b64decode(w["blob"])),
        public_key=d.get("public_key"),
    )

"""The hash chain and its seals: what makes the audit log tamper-evident.

Each worker process writes its own *stream* (a random id), so many workers
append without coordinating. Within a stream, record ``n`` carries the hash
of record ``n-1``; a record's hash is SHA-256 over its canonical JSON (keys
sorted, no spaces, UTF-8) without the ``hash`` field::

    {"format": 1, "stream": "9f3c...", "n": 7, "prev": "<hex of record 6>",
     "type": "event", "at": ..., "actor": ..., "action": ..., "outcome": ...,
     ..., "hash": "<hex>"}

Record 1 has ``prev`` = 64 zeros. Editing a record breaks its hash; deleting
or reordering breaks ``n``/``prev``. Forging a whole consistent tail needs
the *seal*: every so often (and on every management record) the stream
writes a ``"type": "seal"`` record whose ``mac`` is an HMAC-SHA256, under the
audit sealing key, over ``{stream, n, head}`` of the record before it. The
sealing key is drawn from the HSM and stored only wrapped by the master key
(:mod:`kmsframe.audit.sealing`), so only someone holding the HSM can forge a
seal. Truncating the tail is caught by the *anchor*: each seal is also
written, with its MAC, outside the log (a document in the key store), and
verification requires every anchored seal to be present in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from json.encoder import encode_basestring as _string  # type: ignore[attr-defined]
from typing import Any

RECORD_FORMAT = 1
GENESIS = "0" * 64
_INF = float("inf")


def _number(value: float) -> str:
    if type(value) is int:
        return int.__repr__(value)
    return float.__repr__(value)


def canonical(data: Mapping[str, Any]) -> bytes:
    """Canonical JSON: keys sorted, no spaces, UTF-8 (not ASCII-escaped)."""
    return canonical_text(data).encode("utf-8")


def canonical_text(data: Mapping[str, Any]) -> str:
    # Audit records are flat; encoding them field by field with the json
    # module's own string encoder gives the same text as json.dumps(...,
    # sort_keys=True) several times faster, which matters at 20,000
    # records a second. Anything else takes the general path.
    parts = []
    for name in sorted(data):
        value = data[name]
        kind = type(value)
        if kind is str:
            text = _string(value)
        elif kind is int:
            text = int.__repr__(value)
        elif kind is float and value == value and value not in (_INF, -_INF):
            text = float.__repr__(value)
        elif value is None:
            text = "null"
        elif value is True:
            text = "true"
        elif value is False:
            text = "false"
        else:
            return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        parts.append(_string(name) + ":" + text)
    return "{" + ",".join(parts) + "}"


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def seal_mac(key: bytes, stream: str, n: int, head: str) -> str:
    """The MAC a seal carries over the record it seals (``n``, ``head``)."""
    return hmac.new(key, canonical({"head": head, "n": n, "seal": 1, "stream": stream}),
                    hashlib.sha256).hexdigest()


class Chain:
    """One stream's position: turns event fields into chained records."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.n = 0
        self.head = GENESIS

    def link(self, fields: Mapping[str, Any], type_: str = "event") -> dict[str, Any]:
        return self.link_line(fields, type_)[0]

    def link_line(self, fields: Mapping[str, Any], type_: str = "event"
                  ) -> tuple[dict[str, Any], str]:
        """The chained record and its JSON line (encoded once, for the sinks)."""
        record = {"format": RECORD_FORMAT, "stream": self.stream, "n": self.n + 1,
                  "prev": self.head, "type": type_, **fields}
        body = canonical_text(record)
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
        record["hash"] = digest
        self.n += 1
        self.head = digest
        # The line is the canonical body plus the hash; verification
        # re-canonicalises, so the hash's position does not matter.
        return record, body[:-1] + ',"hash":"' + digest + '"}'

    def link_crypto(self, at: float, actor: str, action: str, outcome: str, key: str | None,
                    version: int | None, source: str | None, detail: str | None) -> str:
        """:meth:`link_line` for a crypto record, straight to its line.

        The hot lane of the audit log (one record per crypto call): the
        canonical text is laid out in its fixed key order without building
        a dict first. It is the same text :func:`canonical_text` gives for the
        same fields (a test checks).
        """
        n = self.n + 1
        text = ['{"action":', _string(action), ',"actor":', _string(actor),
                ',"at":', _number(at)]
        if detail is not None:
            text += [',"detail":', _string(detail)]
        text.append(',"format":%d' % RECORD_FORMAT)
        if key is not None:
            text += [',"key":', _string(key)]
        text += [',"n":%d,"outcome":' % n, _string(outcome), ',"prev":"', self.head, '"']
        if source is not None:
            text += [',"source":', _string(source)]
        text += [',"stream":"', self.stream, '","type":"event"']
        if version is not None:
            text.append(',"version":%d' % version)
        body = "".join(text)
        digest = hashlib.sha256((body + "}").encode("utf-8")).hexdigest()
        self.n = n
        self.head = digest
        return body + ',"hash":"' + digest + '"}'

    def seal(self, key: bytes, key_id: str, at: float, closed: bool = False) -> dict[str, Any]:
        """A seal record over the current head (itself chained); ``closed``
        marks the stream's last record."""
        sealed_n, sealed_head = self.n, self.head
        fields: dict[str, Any] = {"at": at, "sealed_n": sealed_n, "sealed_head": sealed_head,
                                  "seal_key": key_id,
                                  "mac": seal_mac(key, self.stream, sealed_n, sealed_head)}
        if closed:
            fields["closed"] = True
        return self.link(fields, "seal")

    def seal_line(self, key: bytes, key_id: str, at: float, closed: bool = False
                  ) -> tuple[dict[str, Any], str]:
        record = self.seal(key, key_id, at, closed)
        return record, canonical_text(record)

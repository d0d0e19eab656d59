"""The ciphertext, signature and MAC text format, and what is bound as AAD.

Layout (see ``docs/formats.md``)::

    VVVVV || base64(algorithm output)

``VVVVV`` is the key version as exactly five decimal digits (10001-99999); the
body is standard base64 with padding. For ``aes-256-gcm`` the algorithm output
is ``nonce(12) || ciphertext || tag(16)``.

The AEAD's associated data binds the key's immutable id, the version and the
caller's encryption context, so a ciphertext opens only under the key, version
and context it was made with::

    "kmsframe/v1" 0x00 key_id 0x00 VVVVV [0x00 canonical-JSON(context)]
"""

from __future__ import annotations

import binascii
import json

import orjson
from collections.abc import Mapping

from .errors import InvalidCiphertext, InvalidRequest
from .model import FIRST_VERSION, LAST_VERSION

PREFIX_DIGITS = 5
_AAD_HEAD = b"kmsframe/v1\x00"


def encode(version: int, body: bytes) -> str:
    """Format ``body`` made with ``version`` as ciphertext text."""
    return f"{version:05d}" + b2a(body)


def decode(text: str) -> tuple[int, bytes]:
    """Split ciphertext text into (version, body); syntax errors only."""
    if not isinstance(text, str) or len(text) <= PREFIX_DIGITS:
        raise InvalidCiphertext()
    head = text[:PREFIX_DIGITS]
    if not head.isdigit() or not head.isascii():
        raise InvalidCiphertext()
    version = int(head)
    if not FIRST_VERSION <= version <= LAST_VERSION:
        raise InvalidCiphertext()
    try:
        body = binascii.a2b_base64(text[PREFIX_DIGITS:], strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidCiphertext() from None
    return version, body


def canonical_context(context: Mapping[str, str] | None) -> bytes:
    """Encryption context as canonical JSON (sorted keys, no spaces, UTF-8)."""
    if not context:
        return b""
    if not isinstance(context, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in context.items()
    ):
        raise InvalidRequest("context must be an object of string values")
    # orjson emits the same bytes as json.dumps(sort_keys, compact, UTF-8), faster.
    return orjson.dumps(context, option=orjson.OPT_SORT_KEYS)


def data_aad(key_id: str, version: int, context: Mapping[str, str] | None = None) -> bytes:
    """The associated data for data encrypted under ``key_id``/``version``."""
    head = _AAD_HEAD + key_id.encode("ascii") + b"\x00" + b"%05d" % version
    if context:
        return head + b"\x00" + canonical_context(context)
    return head


def wrap_aad(key_id: str, version: int, algorithm: str, purpose: str) -> bytes:
    """The associated data binding a wrapped working key to its record."""
    return json.dumps(
        {"alg": algorithm, "key": key_id, "purpose": purpose, "v": version, "wrap": 1},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def b2a(body: bytes) -> str:
    """Standard base64 with padding, as text (the body of ciphertext text)."""
    return binascii.b2a_base64(body, newline=False).decode("ascii")

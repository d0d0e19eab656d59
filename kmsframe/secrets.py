"""Values that must never be printed, logged or pickled.

This is kmsframe's room with a warning on the door. :class:`KeyMaterial`
holds raw key bytes and :class:`Secret` holds a configured secret (a PIN, an
unseal passphrase). Both print as ``'**********'`` and refuse to pickle, so a
stray ``repr``, log call or ``multiprocessing`` hand-off cannot leak them.
Reading the bytes is explicit: ``.reveal()``.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

REDACTED = "**********"


class _Sealed:
    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"{type(self).__name__} takes bytes")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """Return the raw bytes. Every caller of this is a place a secret is used."""
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        # Constant time: equality of secrets must not leak a prefix length.
        return hmac.compare_digest(self._value, other._value)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        raise TypeError(f"{type(self).__name__} is not hashable")

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} refuses to be pickled")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} refuses to be pickled")

    def __copy__(self) -> "_Sealed":
        return self

    def __deepcopy__(self, memo: object) -> "_Sealed":
        return self


class KeyMaterial(_Sealed):
    """Raw key bytes (a working key, a share, a derived key). Never logged."""

    __slots__ = ()


class Secret(_Sealed):
    """A configured secret: a PIN, a passphrase, a token. Never logged."""

    __slots__ = ()

    @classmethod
    def from_text(cls, text: str) -> "Secret":
        return cls(text.encode("utf-8"))

    def reveal_text(self) -> str:
        return self._value.decode("utf-8")


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a, b)

"""Keys in a :class:`~kmsframe.providers.Storage`: read, create, and update
with optimistic concurrency so concurrent writers never lose an update."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .errors import ConcurrentModification, KeyNotFound
from .model import Key
from .providers import Storage
from .records import KIND_KEY, key_from_document, key_to_document

T = TypeVar("T")
MAX_ATTEMPTS = 20


class KeyRepository:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, name: str) -> Key:
        doc = self.storage.get(KIND_KEY, name)
        if doc is None:
            raise KeyNotFound(f"no key named {name!r}")
        return key_from_document(doc.data, doc.revision)

    def list(self) -> list[Key]:
        return sorted(
            (key_from_document(d.data, d.revision) for d in self.storage.list(KIND_KEY)),
            key=lambda k: k.name,
        )

    def create(self, key: Key) -> Key:
        revision = self.storage.put(KIND_KEY, key.name, key_to_document(key), expected_revision=0)
        return _at(key, revision)

    def update(self, name: str, change: Callable[[Key], tuple[Key, T] | None]) -> tuple[Key, T | None]:
        """Apply ``change`` to the latest stored key and save it; retry lost races.

        ``change`` must be a pure function of the key it is given (it may run
        more than once); it returns the new key and a value passed back, or
        None when there is nothing to change (then nothing is written).
        """
        for _ in range(MAX_ATTEMPTS):
            current = self.get(name)
            changed = change(current)
            if changed is None:
                return current, None
            new, result = changed
            try:
                revision = self.storage.put(
                    KIND_KEY, name, key_to_document(new), expected_revision=current.revision
                )
            except ConcurrentModification:
                continue
            return _at(new, revision), result
        raise ConcurrentModification(f"key {name!r} is being changed by others; retry")


def _at(key: Key, revision: int) -> Key:
    import attrs

    return attrs.evolve(key, revision=revision)

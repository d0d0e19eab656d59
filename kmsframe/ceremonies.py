"""Master-key ceremonies that work on any HSM backend: generate, rotate with
an online re-wrap of every working-key version, back up, restore, retire.

These are plain functions so that whoever calls them — the ``kmsframe hsm``
commands today, the approvals engine (dual control) tomorrow — decides who
may. None of them changes a working key: re-wrapping replaces only each
version's *wrapped form* (same key bytes, same AAD, new master key), so no
ciphertext is invalidated and the service keeps running throughout.

Re-wrap protocol, per key (optimistic, resumable, safe with live traffic):

1. read the key; for each version whose wrapped form names another master
   key, unwrap it under that key and wrap it under the current one (HSM calls
   happen outside the store's retry loop);
2. save with :meth:`KeyRepository.update`: a version is replaced only if its
   stored wrapped form is still the one we unwrapped; if the key changed in
   between (a rotation added a version), go back to 1 for that key;
3. failures are collected per version, never half-written; running the
   ceremony again continues where it stopped.

Backends may offer custodian shares (M-of-N) through the optional
:class:`SharedMasterKeys` protocol (the ``pkcs11`` backend does).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from . import ciphertext as ct
from .errors import Conflict, IntegrityError, InvalidRequest, KmsError
from .keystore import KeyRepository
from .model import HistoryEntry, Key, WrappedKey
from .providers import HsmBackend
from .secrets import Secret

MAX_KEY_ATTEMPTS = 5


@runtime_checkable
class SharedMasterKeys(Protocol):
    """An HSM backend that can make and reload master keys from custodian shares."""

    def generate_master_key_with_shares(self, count: int, threshold: int) -> tuple[str, list[Secret]]:
        """Make a master key, split it M-of-N, load it and make it current."""
        ...

    def restore_master_key(self, shares: Sequence[Secret], *, token_labels: Sequence[str] = (),
                           make_current: bool = False) -> Mapping[str, Any]:
        """Rebuild a master key from M shares and load it (into chosen tokens)."""
        ...


@runtime_checkable
class ResharableMasterKeys(Protocol):
    """An HSM backend that can hand out a fresh set of shares of a share-made key."""

    def reshare_master_key(self, shares: Sequence[Secret], count: int,
                           threshold: int) -> tuple[str, list[Secret]]: ...


@runtime_checkable
class RetirableMasterKeys(Protocol):
    """An HSM backend that can destroy a master key nothing refers to any more."""

    def retire_master_key(self, master_key_id: str) -> Any: ...


@attrs.frozen(slots=True)
class NewMasterKey:
    """What a generate ceremony shows once: the id, and shares if asked for."""

    master_key_id: str
    shares: tuple[Secret, ...] = ()


@attrs.frozen(slots=True)
class RewrapFailure:
    key: str
    version: int
    code: str


@attrs.frozen(slots=True)
class RewrapReport:
    master_key_id: str
    keys_seen: int
    keys_changed: int
    versions_rewrapped: int
    versions_already_current: int
    failures: tuple[RewrapFailure, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "master_key_id": self.master_key_id, "keys_seen": self.keys_seen,
            "keys_changed": self.keys_changed, "versions_rewrapped": self.versions_rewrapped,
            "versions_already_current": self.versions_already_current,
            "complete": self.complete,
            "failures": [attrs.asdict(f) for f in self.failures],
        }


def generate_master_key(hsm: HsmBackend, *, shares: int | None = None,
                        threshold: int | None = None) -> NewMasterKey:
    """Make a new current master key; old ones still unwrap (no re-wrap yet)."""
    if shares:
        if not isinstance(hsm, SharedMasterKeys):
            raise InvalidRequest(f"HSM backend {hsm.id!r} cannot make a master key from shares")
        mk_id, share_list = hsm.generate_master_key_with_shares(shares, threshold or 0)
        return NewMasterKey(mk_id, tuple(share_list))
    return NewMasterKey(hsm.generate_master_key())


def rewrap_working_keys(hsm: HsmBackend, repository: KeyRepository, *, actor: str = "system",
                        on_changed: Callable[[str], None] | None = None,
                        clock: Callable[[], float] = time.time) -> RewrapReport:
    """Re-wrap every working-key version under the HSM's current master key."""
    target = hsm.status().master_key_id
    if target is None:
        raise InvalidRequest("the HSM has no current master key")
    seen = changed = rewrapped = already = 0
    failures: list[RewrapFailure] = []
    for listed in repository.list():
        seen += 1
        count, current, failed = _rewrap_key(hsm, repository, listed.name, target, actor, clock)
        rewrapped += count
        already += current
        failures.extend(failed)
        if count:
            changed += 1
            if on_changed is not None:
                on_changed(listed.name)
    return RewrapReport(target, seen, changed, rewrapped, already, tuple(failures))


def _rewrap_key(hsm: HsmBackend, repository: KeyRepository, name: str, target: str, actor: str,
                clock: Callable[[], float]) -> tuple[int, int, list[RewrapFailure]]:
    for _ in range(MAX_KEY_ATTEMPTS):
        key = repository.get(name)
        prepared: dict[int, tuple[WrappedKey, WrappedKey]] = {}
        failures: list[RewrapFailure] = []
        current = 0
        for version in key.versions:
            old = version.wrapped
            if old is None:
                continue  # destroyed: nothing to re-wrap
            if old.hsm == hsm.id and old.master_key_id == target:
                current += 1
                continue
            aad = ct.wrap_aad(key.id, version.number, key.algorithm, key.purpose.value)
            try:
                new = hsm.wrap(hsm.unwrap(old, aad), aad)
            except KmsError as exc:
                failures.append(RewrapFailure(name, version.number, exc.code))
                continue
            if new.master_key_id != target:
                raise Conflict("the master key changed during the ceremony; run it again")
            prepared[version.number] = (old, new)
        if not prepared:
            return 0, current, failures

        change = functools.partial(
            _replace_wrapped, prepared=prepared, skip={f.version for f in failures},
            target=target, entry=HistoryEntry(
                at=clock(), action="master_key.rewrapped", actor=actor,
                reason=f"{len(prepared)} version(s) re-wrapped under master key {target}"))
        try:
            _, count = repository.update(name, change)
        except _KeyMoved:
            continue  # a version was added or re-wrapped meanwhile: prepare again
        return count or 0, current, failures
    raise Conflict(f"key {name!r} kept changing during the re-wrap; run the ceremony again")


def _replace_wrapped(stored: Key, *, prepared: Mapping[int, tuple[WrappedKey, WrappedKey]],
                     skip: set[int], target: str, entry: HistoryEntry) -> tuple[Key, int]:
    """The stored key with each prepared version's wrapped form replaced.

    A version is replaced only if it still holds the blob that was unwrapped;
    one still under an old master key that was not prepared (added meanwhile)
    sends the caller back to prepare again.
    """
    versions = []
    for version in stored.versions:
        pair = prepared.get(version.number)
        if pair is not None and version.wrapped == pair[0]:
            version = attrs.evolve(version, wrapped=pair[1])
        elif version.wrapped is not None and version.wrapped.master_key_id != target \
                and version.number not in skip:
            raise _KeyMoved()
        versions.append(version)
    return attrs.evolve(stored, versions=tuple(versions),
                        history=(*stored.history, entry)), len(prepared)


class _KeyMoved(Exception):
    """The stored key has a version we did not prepare a re-wrap for."""


def rotate_master_key(hsm: HsmBackend, repository: KeyRepository, *, shares: int | None = None,
                      threshold: int | None = None, actor: str = "system",
                      on_changed: Callable[[str], None] | None = None
                      ) -> tuple[NewMasterKey, RewrapReport]:
    """New master key, then every working-key version re-wrapped under it, online.

    The old master key stays in the HSM (blobs not yet re-wrapped, and other
    processes' caches, still open); retire it with :func:`retire_master_key`
    once the report is complete.
    """
    new = generate_master_key(hsm, shares=shares, threshold=threshold)
    return new, rewrap_working_keys(hsm, repository, actor=actor, on_changed=on_changed)


def references(repository: KeyRepository, master_key_id: str) -> list[tuple[str, int]]:
    """Every (key, version) whose wrapped form still needs ``master_key_id``."""
    return [
        (key.name, v.number)
        for key in repository.list()
        for v in key.versions
        if v.wrapped is not None and v.wrapped.master_key_id == master_key_id
    ]


def master_key_lost(hsm: HsmBackend, repository: KeyRepository) -> bool:
    """Does the HSM hold none of the master keys the stored working keys need?

    True only for a total loss: every configured token is up and answers
    that it lacks every one of those keys (a blank replacement token). Then
    dual control cannot work — approvers' second factors are sealed under
    the lost key — and the custodians' shares are the only control left on a
    restore. A token that is down, or data that opens, is not a loss.
    """
    tried: set[str] = set()
    for key in repository.list():
        for version in key.versions:
            wrapped = version.wrapped
            if wrapped is None or wrapped.master_key_id in tried:
                continue
            tried.add(wrapped.master_key_id)
            aad = ct.wrap_aad(key.id, version.number, key.algorithm, key.purpose.value)
            try:
                hsm.unwrap(wrapped, aad)
            except IntegrityError:
                continue
            return False
    return bool(tried)


def retire_master_key(hsm: HsmBackend, repository: KeyRepository, master_key_id: str) -> Any:
    """Destroy an old master key in the HSM, refused while anything refers to it."""
    if not isinstance(hsm, RetirableMasterKeys):
        raise InvalidRequest(f"HSM backend {hsm.id!r} cannot retire master keys")
    used = references(repository, master_key_id)
    if used:
        raise Conflict(f"master key {master_key_id} still wraps {len(used)} key version(s); "
                       "run the re-wrap first")
    return hsm.retire_master_key(master_key_id)


def backup_master_key(hsm: HsmBackend, shares: Sequence[Secret], *, count: int,
                      threshold: int) -> NewMasterKey:
    """Back up again: M custodians' shares of a master key in, N new shares out.

    For a new custodian set or a lost share. The backend proves the rebuilt
    key is the one it holds before making new shares. (A master key made
    inside a single token has no shares and cannot be backed up by design;
    rotate with shares to get one that can.)
    """
    if not isinstance(hsm, ResharableMasterKeys):
        raise InvalidRequest(f"HSM backend {hsm.id!r} cannot back up a master key as shares")
    mk_id, share_list = hsm.reshare_master_key(shares, count, threshold)
    return NewMasterKey(mk_id, tuple(share_list))


def restore_master_key(hsm: HsmBackend, shares: Sequence[Secret], *,
                       token_labels: Sequence[str] = (), make_current: bool = False
                       ) -> Mapping[str, Any]:
    """Load a master key rebuilt from custodian shares (a replacement token, DR)."""
    if not isinstance(hsm, SharedMasterKeys):
        raise InvalidRequest(f"HSM backend {hsm.id!r} cannot restore a master key from shares")
    return hsm.restore_master_key(shares, token_labels=token_labels, make_current=make_current)

"""The ``pkcs11`` HSM backend: master keys in one or more PKCS#11 tokens.

Each configured token is a :class:`~.token.Token`. With several tokens (which
must hold the same master keys, loaded from custodian shares), every
operation goes to the first token that is up and holds the master key it
needs; a token that fails is marked down, the operation is retried on the
next one, and the failed token is reconnected in the background of later
calls. ``status()`` reports each token.
"""

from __future__ import annotations

import logging
import secrets as _random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from kmsframe.errors import (
    ConfigurationError,
    HsmSealed,
    IntegrityError,
    InvalidRequest,
    KmsError,
    Unavailable,
)
from kmsframe.model import WrappedKey
from kmsframe.providers import HsmStatus
from kmsframe.secrets import KeyMaterial, Secret

from . import blobs, shares
from .settings import Pkcs11Settings
from .token import MECHANISM_OF, NO_SUCH_TOKEN, MasterKeyMissing, Token, TokenDown

log = logging.getLogger(__name__)
BACKEND_ID = "pkcs11"
T = TypeVar("T")
MAX_RANDOM = 4096
STARTUP_ATTEMPTS = 3


def new_master_key_id() -> str:
    """``mk-YYYYMMDDTHHMMSS-<8 hex>``: unique, and readable as to when it was made."""
    return time.strftime("mk-%Y%m%dT%H%M%S-", time.gmtime()) + _random.token_hex(4)


class Pkcs11Hsm:
    """The ``pkcs11`` HSM backend (see the module docstring)."""

    id = BACKEND_ID

    def __init__(self, settings: Pkcs11Settings) -> None:
        # True only when every token's slot says it is hardware (CKF_HW_SLOT);
        # SoftHSM2 does not, and status() must not pretend otherwise.
        self.hardware = False
        self.settings = settings
        self.scheme = blobs.SCHEMES[settings.mechanism]
        self.tokens = [Token(spec, key_label=settings.key_label,
                             retry_seconds=settings.retry_seconds) for spec in settings.tokens]
        self._current: str | None = None
        self._opened = False

    def __repr__(self) -> str:
        labels = ", ".join(t.label for t in self.tokens)
        return f"Pkcs11Hsm(tokens=[{labels}], mechanism={self.settings.mechanism!r})"

    # -- lifecycle --------------------------------------------------------------

    def open(self) -> None:
        """Log in to every token; at least one must come up.

        A wrong PIN or label is a configuration error at once; a token that
        is merely absent leaves the backend degraded, not down.
        """
        reasons = []
        try:
            for token in self.tokens:
                try:
                    self._connect_at_startup(token)
                except TokenDown as exc:
                    reasons.append(str(exc))
                    continue
                self._check_mechanism(token)
            if not any(t.up for t in self.tokens):
                log.error("no HSM token is available: %s", "; ".join(reasons))
                raise Unavailable("no HSM token is available", log_detail="; ".join(reasons))
        except KmsError:
            self.close()  # log out of the tokens that did open
            raise
        for reason in reasons:
            log.error("HSM opened degraded: %s", reason)
        self.hardware = all(t.hardware for t in self.tokens if t.up)
        self._opened = True
        self._current = self._read_current()

    @staticmethod
    def _connect_at_startup(token: Token) -> None:
        # SoftHSM2 reads its token directory once, in C_Initialize. When two
        # workers start on one token, one may initialise while the other is
        # rewriting the token's files (logging in, making its first objects);
        # it then sees no such token, and retrying without initialising the
        # library again can never succeed (reproduced: 1 start in 25 failed
        # even with retries). So a missing token re-initialises the library
        # (this process's sessions of it reopen on their next call) and tries
        # again; a start that fails kills the whole server.
        for attempt in range(STARTUP_ATTEMPTS):
            try:
                token.connect()
                return
            except TokenDown as exc:
                if attempt == STARTUP_ATTEMPTS - 1:
                    raise
                log.warning("HSM token %r did not open (%s); retrying", token.label, exc.reason)
                time.sleep(0.2 * (attempt + 1))
                if exc.reason == NO_SUCH_TOKEN and token.library is not None:
                    token.library.reinitialize()

    def _check_mechanism(self, token: Token) -> None:
        mechanism = int(MECHANISM_OF[self.scheme])
        if mechanism not in token.mechanisms:
            offered = [name for name, scheme in blobs.SCHEMES.items()
                       if int(MECHANISM_OF[scheme]) in token.mechanisms]
            raise ConfigurationError(
                f"hsm: token {token.label!r} does not support mechanism "
                f"{self.settings.mechanism!r} (it supports: {', '.join(offered) or 'neither'})")

    def close(self) -> None:
        for token in self.tokens:
            token.close()
        self._opened = False
        self._current = None

    def status(self) -> HsmStatus:
        """Each token's live state: up means it just did a wrap round trip
        under the current master key (or answered, before there is one)."""
        if self._opened:
            self._current = self._read_current() or self._current
        current = self._current
        reports = []
        for token in self.tokens:
            alive = self._opened and token.probe(current)
            entry: dict[str, Any] = {"label": token.label, "module": token.spec.module,
                                     "model": token.model, "hardware": token.hardware,
                                     "up": alive, "error": None if alive else token.error}
            if alive:
                try:
                    entry["current_master_key"] = token.current()
                except TokenDown:
                    entry.update(up=False, error=token.error)
            elif entry["error"] is None:
                entry["error"] = f"master key {current} does not work in this token"
            reports.append(entry)
        ready = current is not None and any(
            r["up"] and r.get("current_master_key") == current for r in reports)
        up = sum(1 for r in reports if r["up"])
        detail = f"{up} of {len(reports)} tokens up, mechanism {self.settings.mechanism}"
        if current is None and up:
            detail += "; no master key yet (run 'kmsframe init')"
        if not self.hardware:
            detail += "; software token(s): not a hardware security module"
        return HsmStatus(backend=self.id, ready=ready, sealed=False, hardware=self.hardware,
                         master_key_id=current, detail=detail, tokens=tuple(reports))

    # -- failover -------------------------------------------------------------------

    def _each(self, work: Callable[[Token], T], *, what: str) -> T:
        """Run ``work`` on the first token that can do it; fail over on TokenDown."""
        if not self._opened:
            raise HsmSealed("the HSM is not open")
        reasons = []
        missing = 0
        for token in self.tokens:
            try:
                return work(token)
            except MasterKeyMissing as exc:
                missing += 1
                reasons.append(exc.reason)
            except TokenDown as exc:
                reasons.append(exc.reason)
                log.warning("HSM %s failed on token %r (%s); trying the next token",
                            what, token.label, exc.reason)
        if missing == len(self.tokens):
            # Every token is working and none has that key: the record names a
            # master key this deployment never had (or retired): bad data.
            raise IntegrityError(log_detail=f"{what}: " + "; ".join(reasons))
        raise Unavailable("no HSM token could serve the request",
                          log_detail=f"{what}: " + "; ".join(reasons))

    def _read_current(self) -> str | None:
        for token in self.tokens:
            try:
                current = token.current()
            except TokenDown:
                continue
            if current is not None:
                return current
        return None

    def _current_id(self) -> str:
        # Read the pointer from the token on every wrap: wraps are rare (new
        # versions), and another process may have rotated the master key.
        current = self._read_current()
        if current is None:
            raise HsmSealed("the HSM has no master key; run 'kmsframe init'")
        self._current = current
        return current

    # -- the HSM's work ------------------------------------------------------------

    def wrap(self, material: KeyMaterial, aad: bytes) -> WrappedKey:
        mk_id = self._current_id()
        blob = self._each(lambda t: t.wrap(mk_id, material, aad), what="wrap")
        return WrappedKey(hsm=self.id, master_key_id=mk_id, blob=blob)

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> KeyMaterial:
        if wrapped.hsm != self.id:
            raise IntegrityError(log_detail=f"wrapped by HSM backend {wrapped.hsm!r}")
        return self._each(lambda t: t.unwrap(wrapped.master_key_id, wrapped.blob, aad),
                          what="unwrap")

    def random(self, n: int) -> bytes:
        if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_RANDOM:
            raise InvalidRequest(f"random length must be between 1 and {MAX_RANDOM} bytes")
        return self._each(lambda t: t.random(n), what="random")

    # -- master keys --------------------------------------------------------------

    def generate_master_key(self) -> str:
        """Generate a master key inside the token and make it current.

        Only for a single token: a key generated inside one token can never
        reach another. With several tokens use
        :meth:`generate_master_key_with_shares`.
        """
        if len(self.tokens) != 1:
            raise InvalidRequest(
                "with several tokens the master key must be made from custodian shares "
                "(kmsframe hsm rotate --shares N --threshold M)")
        token = self.tokens[0]
        mk_id = new_master_key_id()
        try:
            token.generate_master_key(mk_id, self.scheme)
            token.set_current(mk_id)
        except TokenDown as exc:
            raise Unavailable("the HSM token is unavailable", log_detail=str(exc)) from None
        self._current = mk_id
        return mk_id

    def generate_master_key_with_shares(self, count: int, threshold: int) -> tuple[str, list[Secret]]:
        """A new master key from the token's generator, split M-of-N, loaded into
        every configured token and made current. Returns (id, shares).

        Every token must be up: a ceremony that left one token without the new
        key would break redundancy silently.
        """
        current = self._read_current()
        down = [t.label for t in self.tokens if not t.probe(current)]
        if down:
            raise Unavailable(f"tokens {', '.join(down)} are down; the ceremony needs all tokens")
        mk_id = new_master_key_id()
        key = KeyMaterial(self.random(32))
        share_list = shares.split(key, mk_id, threshold, count, self.settings.mechanism)
        self._load_everywhere(mk_id, key, self.scheme, self.tokens, make_current=True)
        return mk_id, share_list

    def restore_master_key(self, share_list: Sequence[Secret], *, token_labels: Sequence[str] = (),
                           make_current: bool = False) -> dict[str, Any]:
        """Load a master key rebuilt from M custodian shares into tokens.

        ``token_labels`` chooses the tokens (default: every configured token
        that lacks it). The pointer to the current key is set in a token that
        has none, or everywhere if ``make_current``. A wrong or short set of
        shares is refused before any token is touched.
        """
        mk_id, key, mechanism = shares.combine(share_list)
        if mechanism not in blobs.SCHEMES:
            raise InvalidRequest("the shares name an unknown mechanism")
        targets = [t for t in self.tokens if not token_labels or t.label in token_labels]
        unknown = set(token_labels) - {t.label for t in self.tokens}
        if unknown:
            raise InvalidRequest(f"no configured token is labelled {', '.join(sorted(unknown))}")
        loaded = self._load_everywhere(mk_id, key, blobs.SCHEMES[mechanism], targets,
                                       make_current=make_current)
        self._current = self._read_current()
        return {"master_key_id": mk_id, "kcv": shares.kcv(key), "loaded_into": loaded}

    def _load_everywhere(self, mk_id: str, key: KeyMaterial, scheme: int,
                         targets: Sequence[Token], *, make_current: bool) -> list[str]:
        """Load, cross-check, then point: a failure part-way leaves every
        token's current key as it was (at worst an unused key object)."""
        try:
            for token in targets:
                token.import_master_key(mk_id, key, scheme)
            # Prove every token opens what another wrapped under this key.
            probe = KeyMaterial(self.random(32))
            aad = b"kmsframe/pkcs11-ceremony-check"
            blob = targets[0].wrap(mk_id, probe, aad)
            for token in targets[1:]:
                if token.unwrap(mk_id, blob, aad) != probe:
                    raise IntegrityError(log_detail=f"token {token.label} holds a different key")
            for token in targets:
                if make_current or token.current() is None:
                    token.set_current(mk_id)
        except TokenDown as exc:
            raise Unavailable(f"token {exc.label!r} failed during the ceremony",
                              log_detail=str(exc)) from None
        if make_current:
            self._current = mk_id
        return [t.label for t in targets]

    def reshare_master_key(self, share_list: Sequence[Secret], count: int,
                           threshold: int) -> tuple[str, list[Secret]]:
        """Back-up refresh: M old shares in, a new set of N shares of the same key out.

        The rebuilt key is proven to be the one in the tokens before any new
        share is made: a token wraps a random probe under it and the probe
        is opened here with the rebuilt bytes. The old shares stay valid
        (Shamir shares cannot be revoked); to retire them, rotate instead.
        """
        mk_id, key, mechanism = shares.combine(share_list)
        if mechanism not in blobs.SCHEMES:
            raise InvalidRequest("the shares name an unknown mechanism")
        probe = KeyMaterial(self.random(32))
        aad = b"kmsframe/pkcs11-reshare-check"
        blob = self._each(lambda t: t.wrap(mk_id, probe, aad), what="reshare")
        if blobs.open_on_host(key, blob, aad) != probe:
            raise InvalidRequest(f"the shares do not rebuild the key held as {mk_id}")
        return mk_id, shares.split(key, mk_id, threshold, count, mechanism)

    def retire_master_key(self, mk_id: str) -> list[str]:
        """Destroy a (no longer referenced) master key in every token."""
        if mk_id == self._current_id():
            raise InvalidRequest("the current master key cannot be retired")
        return [t.label for t in self.tokens if t.destroy_master_key(mk_id)]

    def master_keys(self) -> dict[str, list[dict[str, Any]]]:
        """Per token, its master keys and their security attributes."""
        out = {}
        for token in self.tokens:
            try:
                out[token.label] = token.master_keys()
            except TokenDown:
                out[token.label] = []
        return out

    def initialize(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Create the first master key if no token has one (idempotent).

        ``{"shares": N, "threshold": M}`` makes it from custodian shares and
        loads it into every token (required with several tokens); otherwise it
        is generated inside the single token and can never leave it.
        """
        options = dict(options or {})
        if not self._opened:
            self.open()
        current = self._read_current()
        if current is not None:
            self._current = current
            return {"master_key_id": current, "created": False}
        if options.get("shares"):
            mk_id, share_list = self.generate_master_key_with_shares(
                int(options["shares"]), int(options.get("threshold") or 0))
            return {"master_key_id": mk_id, "created": True, "shares": share_list}
        return {"master_key_id": self.generate_master_key(), "created": True}

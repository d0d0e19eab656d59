"""Time-based one-time passwords (RFC 6238) — the admins' second factor.

Built on pyotp. The seed is drawn from the HSM's generator and stored only
wrapped by the master key (see :mod:`kmsframe.access.users`). A code is
accepted in the current step or ``window`` steps either side, and never
twice: ``verify`` returns the matched time step, which the caller stores and
passes back as ``after_step`` so a replayed code fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import attrs
import pyotp

DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


@attrs.frozen(slots=True)
class TotpParameters:
    digits: int = 6
    period: int = 30
    digest: str = "sha1"  # what common authenticator apps support
    window: int = 1

    def __attrs_post_init__(self) -> None:
        if self.digits not in (6, 7, 8) or self.period < 10 or self.digest not in DIGESTS \
                or not 0 <= self.window <= 3:
            raise ValueError("TOTP needs 6-8 digits, a period of 10 s or more, "
                             "sha1/sha256/sha512 and a window of 0-3 steps")


def seed_to_base32(seed: bytes) -> str:
    return base64.b32encode(seed).decode("ascii").rstrip("=")


class Totp:
    """One user's TOTP generator over a raw seed."""

    def __init__(self, seed: bytes, params: TotpParameters = TotpParameters()) -> None:
        self.params = params
        self._otp = pyotp.TOTP(seed_to_base32(seed), digits=params.digits,
                               digest=DIGESTS[params.digest], interval=params.period)

    def __repr__(self) -> str:
        return "Totp(**********)"

    def step(self, at: float) -> int:
        return int(at) // self.params.period

    def code_at(self, at: float) -> str:
        return self._otp.at(int(at))

    def verify(self, code: str, at: float, *, after_step: int = -1) -> int | None:
        """The matched time step, or None. Steps <= ``after_step`` never match."""
        if not isinstance(code, str) or len(code) != self.params.digits or not code.isdigit():
            return None
        now = self.step(at)
        matched = None
        # Check every step in the window, with constant-time compares, so the
        # time taken does not depend on which step (if any) matched.
        for step in range(now - self.params.window, now + self.params.window + 1):
            expected = self._otp.generate_otp(step)
            if hmac.compare_digest(expected, code) and step > after_step and matched is None:
                matched = step
        return matched

    def provisioning_uri(self, account: str, issuer: str = "kmsframe") -> str:
        """otpauth:// URI for an authenticator app (shown once at enrolment)."""
        return self._otp.provisioning_uri(name=account, issuer_name=issuer)

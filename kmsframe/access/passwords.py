"""Password hashing with Argon2id (argon2-cffi); only the hash is stored.

The parameters are configurable (``[access] argon2_*``) and recorded in each
hash (PHC string), so raising them later re-hashes a user's password at their
next successful login. Unknown users are checked against a dummy hash so a
login's timing does not say whether the user exists.
"""

from __future__ import annotations

import attrs
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import InvalidRequest

MIN_PASSWORD_LENGTH = 12


@attrs.frozen(slots=True)
class PasswordPolicy:
    """Argon2id cost and the minimum password length."""

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 2
    min_length: int = MIN_PASSWORD_LENGTH


class Passwords:
    def __init__(self, policy: PasswordPolicy = PasswordPolicy()) -> None:
        self.policy = policy
        self._hasher = PasswordHasher(
            time_cost=policy.time_cost, memory_cost=policy.memory_cost_kib,
            parallelism=policy.parallelism, type=Type.ID)
        self._dummy = self._hasher.hash("kmsframe dummy password for timing")

    def hash(self, password: str) -> str:
        """Check the policy and return the Argon2id PHC string."""
        if not isinstance(password, str) or len(password) < self.policy.min_length:
            raise InvalidRequest(
                f"passwords must be at least {self.policy.min_length} characters")
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant-time check; ``stored_hash=None`` burns the same time and fails."""
        if not isinstance(password, str):
            return False
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and \
                stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

import pytest

from kmsframe.access.passwords import PasswordPolicy, Passwords
from kmsframe.errors import InvalidRequest

FAST = PasswordPolicy(time_cost=1, memory_cost_kib=1024, parallelism=1)


def test_hash_is_argon2id_and_verifies():
    p = Passwords(FAST)
    h = p.hash("a long enough password")
    assert h.startswith("$argon2id$")
    assert "a long enough password" not in h
    assert p.verify(h, "a long enough password")


@pytest.mark.parametrize("wrong", ["a long enough passworD", "", None, b"a long enough password"])
def test_wrong_passwords_fail(wrong):
    p = Passwords(FAST)
    assert not p.verify(p.hash("a long enough password"), wrong)


def test_unknown_user_is_checked_against_a_dummy_and_fails():
    assert not Passwords(FAST).verify(None, "kmsframe dummy password for timing")


def test_short_passwords_are_refused():
    with pytest.raises(InvalidRequest):
        Passwords(FAST).hash("short")


def test_corrupt_hash_fails_closed():
    assert not Passwords(FAST).verify("$argon2id$garbage", "a long enough password")


def test_weaker_hash_needs_rehash_under_stronger_policy():
    weak = Passwords(FAST).hash("a long enough password")
    assert Passwords(PasswordPolicy(time_cost=2, memory_cost_kib=1024, parallelism=1)).needs_rehash(weak)

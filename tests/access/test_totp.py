"""TOTP against the RFC 6238 test vectors, including codes that must fail."""

import json
from pathlib import Path

import pytest

from kmsframe.access.totp import Totp, TotpParameters

DATA = json.loads((Path(__file__).parent / "vectors" / "rfc6238.json").read_text())
CASES = [(v["time"], digest, v[digest]) for v in DATA["vectors"] for digest in DATA["seeds"]]


def totp(digest: str) -> Totp:
    return Totp(DATA["seeds"][digest].encode(), TotpParameters(digits=8, digest=digest))


@pytest.mark.parametrize(("at", "digest", "expected"), CASES)
def test_rfc6238_vector_codes(at, digest, expected):
    assert totp(digest).code_at(at) == expected


@pytest.mark.parametrize(("at", "digest", "expected"), CASES)
def test_rfc6238_vector_verifies_at_its_time(at, digest, expected):
    assert totp(digest).verify(expected, at) == at // 30


@pytest.mark.parametrize(("at", "digest", "expected"), CASES)
def test_rfc6238_vector_fails_far_from_its_time(at, digest, expected):
    # Three steps away is outside the one-step window.
    assert totp(digest).verify(expected, at + 90) is None


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_vector_under_another_digest_is_rejected(digest):
    other = {"sha1": "sha256", "sha256": "sha512", "sha512": "sha1"}[digest]
    code = DATA["vectors"][1][other]
    assert totp(digest).verify(code, DATA["vectors"][1]["time"]) is None


def test_a_used_step_never_verifies_again():
    t = totp("sha1")
    step = t.verify("07081804", 1111111109)
    assert step is not None
    assert t.verify("07081804", 1111111109, after_step=step) is None


def test_neighbouring_steps_are_accepted_within_the_window():
    t = totp("sha1")
    code_next = t.code_at(1111111109 + 30)
    assert t.verify(code_next, 1111111109) == 1111111109 // 30 + 1


@pytest.mark.parametrize("bad", ["", "0708180", "070818040", "0708180a", None, 7081804])
def test_malformed_codes_are_rejected(bad):
    assert totp("sha1").verify(bad, 1111111109) is None


def test_repr_hides_the_seed():
    assert "1234" not in repr(totp("sha1"))


@pytest.mark.parametrize("kwargs", [{"digits": 5}, {"digest": "md5"}, {"period": 5}, {"window": 9}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        TotpParameters(**kwargs)

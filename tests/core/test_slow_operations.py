"""Which crypto operations run off a transport's event loop: what algorithms
declare (``slow_operations``), the default when they do not, and
``KeyService.is_slow`` that the HTTP crypto routes ask on every call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kmsframe.errors import ConfigurationError
from kmsframe.model import Operation, Purpose
from kmsframe.plugins import PluginHost
from kmsframe.providers import slow_operations
from kmsframe.serve import _crypto_threads
from kmsframe.testing import embedded_deployment

ALL = frozenset(Operation)


class Undeclared:
    """An algorithm that says nothing about its cost."""

    def __init__(self, purposes: set[Purpose], binds_aad: bool = True) -> None:
        self.id = "undeclared"
        self.purposes = frozenset(purposes)
        self.binds_aad = binds_aad


@pytest.mark.parametrize("purposes,binds_aad,expected", [
    ({Purpose.ENCRYPT}, True, frozenset()),  # symmetric encryption
    ({Purpose.MAC}, True, frozenset()),
    ({Purpose.SIGN}, True, ALL),  # signatures are public-key
    ({Purpose.ENCRYPT}, False, ALL),  # encryption without associated data: public-key
    ({Purpose.ENCRYPT, Purpose.SIGN}, False, ALL),
])
def test_default_is_slow_for_public_key_fast_for_symmetric(
        purposes: set[Purpose], binds_aad: bool, expected: frozenset[Operation]) -> None:
    assert slow_operations(Undeclared(purposes, binds_aad)) == expected


def test_a_declaration_overrides_the_default() -> None:
    fast_signer = Undeclared({Purpose.SIGN})
    fast_signer.slow_operations = frozenset()  # type: ignore[attr-defined]
    assert slow_operations(fast_signer) == frozenset()
    slow_mac = Undeclared({Purpose.MAC})
    slow_mac.slow_operations = frozenset({"mac"})  # type: ignore[attr-defined]
    assert slow_operations(slow_mac) == {Operation.MAC}
    slow_mac.slow_operations = frozenset({"macc"})  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        slow_operations(slow_mac)


def test_built_in_algorithms_declare_what_was_measured() -> None:
    host = PluginHost()
    host.load_entry_points(["algo_aes", "algo_sm4", "algo_hmac", "algo_rsa", "algo_sm2",
                            "algo_ec"])
    declared = {a.id: slow_operations(a) for a in host.algorithms().values()}
    # Measured per call: AES/SM4/HMAC a few µs; Ed25519 and ECDSA P-256 sign
    # ~25 µs, verify ~80 µs; RSA verify/encrypt 25-80 µs; RSA sign/decrypt
    # 0.3-2 ms; SM2 ~0.3 ms, holding the GIL.
    for fast in ("aes-256-gcm", "sm4-gcm", "sm4-cbc-hmac-sm3", "hmac-sha256", "hmac-sm3",
                 "ed25519", "ecdsa-p256"):
        assert declared[fast] == frozenset(), fast
    for rsa in ("rsa-2048", "rsa-4096", "rsa-3072-pkcs1v15"):
        assert declared[rsa] == ALL - {Operation.VERIFY, Operation.ENCRYPT}, rsa
    assert declared["sm2"] == ALL


def test_is_slow_follows_the_cached_keys_algorithm(tmp_path: Path) -> None:
    with embedded_deployment(tmp_path, extra_plugins=("algo_rsa",)) as d:
        s = d.service
        s.create_key("aes")
        s.create_key("rsa", algorithm="rsa-2048", purpose="sign")
        # Not cached: the call reads the store, which the routes handle apart.
        assert not s.is_slow("rsa", Operation.SIGN)
        s.encrypt("aes", b"x")
        s.sign("rsa", b"x")
        assert s.is_slow("rsa", Operation.SIGN) and not s.is_slow("rsa", Operation.VERIFY)
        # A batch of a public-key algorithm goes off the loop even for fast items;
        # a symmetric batch stays on it.
        assert s.is_slow("rsa", Operation.VERIFY, batch=True)
        assert not s.is_slow("aes", Operation.ENCRYPT)
        assert not s.is_slow("aes", Operation.ENCRYPT, batch=True)
        assert not s.is_slow("missing", Operation.SIGN)
        hits, misses = s.cache.hits, s.cache.misses
        s.is_slow("rsa", Operation.SIGN)
        assert (s.cache.hits, s.cache.misses) == (hits, misses)  # no side effects


@pytest.mark.parametrize("option,configured,workers,expected", [
    (None, None, 1, "cores"),
    (None, None, 64, 1),  # at least one thread per worker
    (3, 5, 1, 3),  # the command line wins
    (None, 5, 1, 5),
    (0, None, 2, 0),  # 0: on the event loop
])
def test_crypto_threads_setting(option: int | None, configured: object, workers: int,
                                expected: object) -> None:
    want = max(1, os.cpu_count() or 1) if expected == "cores" else expected
    assert _crypto_threads(option, configured, workers) == want


@pytest.mark.parametrize("configured", [-1, "4", 2.5, True])
def test_crypto_threads_must_be_a_whole_number(configured: object) -> None:
    with pytest.raises(ConfigurationError):
        _crypto_threads(None, configured, 1)

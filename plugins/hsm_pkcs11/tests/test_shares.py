"""Custodian shares of a master key: split, combine, check values."""

from __future__ import annotations

import itertools
import os

import pytest
from kmsframe_hsm_pkcs11.shares import cmac, combine, kcv, parse, split

from kmsframe.errors import InvalidRequest
from kmsframe.secrets import KeyMaterial, Secret

# NIST SP 800-38B, Appendix D.3 (AES-256): Example 1 (empty) and Example 2 (one block).
NIST_KEY = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")


def test_cmac_matches_nist_sp800_38b_aes256() -> None:
    key = KeyMaterial(NIST_KEY)
    assert cmac(key, b"") == bytes.fromhex("028962f61b7bf89efc6b551f4667d983")
    assert cmac(key, bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")) == \
        bytes.fromhex("28a7023f452e8f82bd4bf28d8c37c35c")
    assert kcv(key) == cmac(key, bytes(16))[:5].hex() and len(kcv(key)) == 10


def test_any_threshold_subset_rebuilds_the_key() -> None:
    key = KeyMaterial(os.urandom(32))
    shares = split(key, "mk-1", 3, 5, "aes-key-wrap-pad")
    assert len({s.reveal_text() for s in shares}) == 5
    for subset in itertools.combinations(shares, 3):
        assert combine(list(subset)) == ("mk-1", key, "aes-key-wrap-pad")
    assert combine(shares) == ("mk-1", key, "aes-key-wrap-pad")


def test_too_few_or_repeated_shares_are_refused() -> None:
    shares = split(KeyMaterial(os.urandom(32)), "mk-1", 3, 5)
    with pytest.raises(InvalidRequest, match="needs 3 distinct"):
        combine(shares[:2])
    with pytest.raises(InvalidRequest, match="needs 3 distinct"):
        combine([shares[0], shares[0], shares[1]])


def test_shares_of_different_keys_do_not_mix() -> None:
    a = split(KeyMaterial(os.urandom(32)), "mk-a", 2, 3)
    b = split(KeyMaterial(os.urandom(32)), "mk-b", 2, 3)
    with pytest.raises(InvalidRequest, match="different master keys"):
        combine([a[0], b[1]])


@pytest.mark.parametrize("text", [
    "", "kms-mk-share:1:mk:2:1:zz:0011223344:aes-gcm", "kms-share-1-00",
    "kms-mk-share:1:mk:2:0:" + "00" * 32 + ":0011223344:aes-gcm",
    "kms-mk-share:1:mk:2:1:" + "00" * 31 + ":0011223344:aes-gcm",
    "kms-mk-share:1:mk:1:1:" + "00" * 32 + ":0011223344:aes-gcm",
    "kms-mk-share:1:mk:2:1:" + "00" * 32 + ":00112233:aes-gcm",
])
def test_malformed_share_is_refused_without_echo(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(Secret.from_text(text))
    assert caught.value.message == "a master-key share is malformed"


@pytest.mark.parametrize("threshold, count", [(1, 3), (4, 3), (2, 256), (0, 0)])
def test_bad_split_parameters(threshold: int, count: int) -> None:
    with pytest.raises(InvalidRequest):
        split(KeyMaterial(os.urandom(32)), "mk", threshold, count)


def test_shares_print_redacted() -> None:
    (share, *_) = split(KeyMaterial(os.urandom(32)), "mk", 2, 2)
    assert "kms-mk-share" not in repr(share) and "kms-mk-share" not in f"{share}"

from __future__ import annotations

import pytest

from kmsframe import ciphertext as ct
from kmsframe.errors import InvalidCiphertext, InvalidRequest


def test_layout_is_five_digit_version_then_base64() -> None:
    text = ct.encode(10001, b"\x00\x01\xfe\xff")
    assert text == "10001AAH+/w=="
    assert ct.decode(text) == (10001, b"\x00\x01\xfe\xff")


@pytest.mark.parametrize("text", [
    "", "1000", "10001", "1000xAAAA", "00001AAAA", "99999AA=A", "10001!!!!", "10001AAA",
    "１０００１AAAA",  # full-width digits are digits to str.isdigit, not to us
    "10001AAAA\n", " 10001AAAA",
])
def test_malformed_text_is_invalid_ciphertext(text: str) -> None:
    with pytest.raises(InvalidCiphertext) as info:
        ct.decode(text)
    assert info.value.code == "invalid_ciphertext"


def test_non_string_is_invalid_ciphertext() -> None:
    with pytest.raises(InvalidCiphertext):
        ct.decode(b"10001AAAA")  # type: ignore[arg-type]


def test_aad_binds_key_version_and_context() -> None:
    base = ct.data_aad("k1", 10001)
    assert base != ct.data_aad("k2", 10001)
    assert base != ct.data_aad("k1", 10002)
    assert base != ct.data_aad("k1", 10001, {"a": "b"})
    assert ct.data_aad("k1", 10001, {"a": "1", "b": "2"}) == ct.data_aad("k1", 10001, {"b": "2", "a": "1"})


def test_context_is_canonical_json() -> None:
    assert ct.canonical_context({"b": "2", "a": "é"}) == '{"a":"é","b":"2"}'.encode()


@pytest.mark.parametrize("bad", [{"a": 1}, {"a": None}, ["a"], "a=b"])
def test_context_values_must_be_strings(bad: object) -> None:
    with pytest.raises(InvalidRequest):
        ct.canonical_context(bad)  # type: ignore[arg-type]

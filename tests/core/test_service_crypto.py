"""Encrypt, decrypt, rewrap, data keys and batches through the in-process API."""

from __future__ import annotations

import base64

import attrs
import pytest

from kmsframe import ciphertext as ct
from kmsframe.errors import (
    DecryptionFailed,
    InvalidRequest,
    KeyDisabled,
    KeyNotFound,
    KmsError,
    PayloadTooLarge,
)
from kmsframe.records import KIND_KEY, key_to_document
from kmsframe.service import KeyService


def test_round_trip_and_version_prefix(service: KeyService) -> None:
    service.create_key("payments")
    result = service.encrypt("payments", b"4111 1111 1111 1111")
    assert result.version == 10001
    assert result.ciphertext.startswith("10001")
    assert service.decrypt("payments", result.ciphertext) == b"4111 1111 1111 1111"


def test_empty_plaintext_round_trips(service: KeyService) -> None:
    service.create_key("k")
    assert service.decrypt("k", service.encrypt("k", b"").ciphertext) == b""


def test_same_plaintext_encrypts_differently(service: KeyService) -> None:
    service.create_key("k")
    assert service.encrypt("k", b"x").ciphertext != service.encrypt("k", b"x").ciphertext


def test_context_is_bound(service: KeyService) -> None:
    service.create_key("k")
    text = service.encrypt("k", b"secret", {"tenant": "a", "purpose": "card"}).ciphertext
    assert service.decrypt("k", text, {"purpose": "card", "tenant": "a"}) == b"secret"
    for wrong in (None, {}, {"tenant": "b", "purpose": "card"}, {"tenant": "a"}):
        with pytest.raises(DecryptionFailed):
            service.decrypt("k", text, wrong)


def test_ciphertext_of_one_key_never_opens_under_another(service: KeyService) -> None:
    service.create_key("a")
    service.create_key("b")
    text = service.encrypt("a", b"secret").ciphertext
    with pytest.raises(DecryptionFailed):
        service.decrypt("b", text)


def test_key_recreated_with_same_name_cannot_open_old_ciphertexts(service: KeyService) -> None:
    service.create_key("a")
    text = service.encrypt("a", b"secret").ciphertext
    storage = service.keys.storage
    doc = storage.get(KIND_KEY, "a")
    storage.delete(KIND_KEY, "a", doc.revision)
    service.create_key("a")
    with pytest.raises(DecryptionFailed):
        service.decrypt("a", text)


def test_ciphertext_under_wrong_version_prefix_fails(service: KeyService) -> None:
    service.create_key("k")
    service.rotate("k")
    text = service.encrypt("k", b"secret").ciphertext
    assert text.startswith("10002")
    with pytest.raises(DecryptionFailed):
        service.decrypt("k", "10001" + text[5:])


@pytest.mark.parametrize("position", [5, 10, 20, -3])
def test_tampered_ciphertext_fails_without_saying_why(service: KeyService, position: int) -> None:
    service.create_key("k")
    text = service.encrypt("k", b"secret message").ciphertext
    body = bytearray(base64.b64decode(text[5:]))
    body[position if position < 0 else position - 5] ^= 1
    tampered = text[:5] + base64.b64encode(bytes(body)).decode()
    with pytest.raises(DecryptionFailed) as info:
        service.decrypt("k", tampered)
    assert info.value.code == "decryption_failed"
    assert info.value.message == "decryption failed"


@pytest.mark.parametrize("text,code", [
    ("10001%%%notbase64", "invalid_ciphertext"),
    ("abcdeAAAA", "invalid_ciphertext"),
    ("", "invalid_ciphertext"),
    ("10001AAAA", "decryption_failed"),  # well-formed but too short to open
    ("20001" + "A" * 40, "decryption_failed"),  # a version that does not exist
])
def test_malformed_and_unknown_ciphertexts_have_stable_codes(service: KeyService, text: str,
                                                             code: str) -> None:
    service.create_key("k")
    with pytest.raises(KmsError) as info:
        service.decrypt("k", text)
    assert info.value.code == code


def test_unknown_key(service: KeyService) -> None:
    with pytest.raises(KeyNotFound) as info:
        service.encrypt("nope", b"x")
    assert info.value.code == "key_not_found"
    with pytest.raises(KeyNotFound):
        service.decrypt("nope", "10001AAAA")


def test_plaintext_must_be_bytes_and_bounded(service: KeyService) -> None:
    service.create_key("k")
    with pytest.raises(InvalidRequest):
        service.encrypt("k", "text")  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge) as info:
        service.encrypt("k", b"x" * (service.settings.max_plaintext_bytes + 1))
    assert info.value.code == "payload_too_large"


def test_wrapped_blob_copied_into_another_key_fails_to_unwrap(service: KeyService) -> None:
    service.create_key("a")
    service.create_key("b")
    storage = service.keys.storage
    a, b = service.get_key("a"), service.get_key("b")
    stolen = attrs.evolve(b.versions[0], wrapped=a.versions[0].wrapped)
    forged = attrs.evolve(b, versions=(stolen,))
    storage.put(KIND_KEY, "b", key_to_document(forged), expected_revision=b.revision)
    service.cache.invalidate()
    with pytest.raises(KmsError) as info:
        service.encrypt("b", b"x")
    assert info.value.code == "integrity_error"


def test_rewrap_moves_old_ciphertext_to_the_primary(service: KeyService) -> None:
    service.create_key("k")
    old = service.encrypt("k", b"card", {"t": "1"}).ciphertext
    service.rotate("k")
    new = service.rewrap("k", old, {"t": "1"})
    assert new.version == 10002 and new.ciphertext.startswith("10002")
    assert service.decrypt("k", new.ciphertext, {"t": "1"}) == b"card"
    with pytest.raises(DecryptionFailed):
        service.rewrap("k", old, {"t": "2"})


def test_data_key_plain_and_wrapped(service: KeyService) -> None:
    service.create_key("k")
    dk = service.generate_data_key("k", {"file": "x"})
    assert dk.plaintext is not None and len(dk.plaintext) == 32
    assert dk.plaintext.reveal().hex() not in repr(dk)
    assert service.decrypt("k", dk.ciphertext, {"file": "x"}) == dk.plaintext.reveal()
    wrapped_only = service.generate_data_key("k", include_plaintext=False, size=16)
    assert wrapped_only.plaintext is None
    assert len(service.decrypt("k", wrapped_only.ciphertext)) == 16
    with pytest.raises(InvalidRequest):
        service.generate_data_key("k", size=8)


def test_batch_fails_items_alone(service: KeyService) -> None:
    service.create_key("k")
    good = service.encrypt("k", b"one").ciphertext
    results = service.batch(service.decrypt, [
        {"name": "k", "ciphertext": good},
        {"name": "k", "ciphertext": "10001!!"},
        {"name": "missing", "ciphertext": good},
        {"name": "k", "ciphertext": good, "unexpected": 1},
        {"name": "k", "ciphertext": good[:-8] + "AAAAAAA="},
    ])
    assert results[0].value == b"one" and results[0].error is None
    assert [r.error.code for r in results[1:]] == [  # type: ignore[union-attr]
        "invalid_ciphertext", "key_not_found", "invalid_request", "decryption_failed"]


def test_batch_size_is_bounded(service: KeyService) -> None:
    service.create_key("k")
    items = [{"name": "k", "plaintext": b"x"}] * (service.settings.max_batch_items + 1)
    with pytest.raises(PayloadTooLarge):
        service.batch(service.encrypt, items)


def test_disabled_key_refuses_crypto_until_enabled(service: KeyService) -> None:
    service.create_key("k")
    text = service.encrypt("k", b"x").ciphertext
    service.disable("k")
    with pytest.raises(KeyDisabled) as info:
        service.encrypt("k", b"x")
    assert info.value.code == "key_disabled"
    with pytest.raises(KeyDisabled):
        service.decrypt("k", text)
    service.enable("k")
    assert service.decrypt("k", text) == b"x"


def test_aad_format_is_what_the_docs_say(service: KeyService) -> None:
    key = service.create_key("k")
    assert ct.data_aad(key.id, 10001, {"b": "2", "a": "1"}) == (
        b"kmsframe/v1\x00" + key.id.encode() + b"\x0010001\x00" + b'{"a":"1","b":"2"}')

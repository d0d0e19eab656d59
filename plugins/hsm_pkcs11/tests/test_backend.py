"""The pkcs11 backend on real SoftHSM2 tokens: wrap, unwrap, random, keys."""

from __future__ import annotations

import threading

import attrs
import pytest
from kmsframe_hsm_pkcs11 import Pkcs11Hsm, build
from kmsframe_hsm_pkcs11.blobs import SCHEME_GCM, SCHEME_KWP
from kmsframe_hsm_pkcs11.testing import PIN

from kmsframe.errors import ConfigurationError, IntegrityError, InvalidRequest, Unavailable
from kmsframe.model import WrappedKey
from kmsframe.secrets import KeyMaterial, Secret

AAD = b'{"alg":"aes-256-gcm","key":"k1","v":10001}'


@pytest.mark.parametrize("fixture", ["hsm", "kwp_hsm"])
def test_wrap_round_trip_and_aad_binding(request: pytest.FixtureRequest, fixture: str) -> None:
    hsm: Pkcs11Hsm = request.getfixturevalue(fixture)
    material = KeyMaterial(hsm.random(32))
    wrapped = hsm.wrap(material, AAD)
    assert wrapped.hsm == "pkcs11"
    assert wrapped.master_key_id == hsm.status().master_key_id
    assert wrapped.blob[1] == (SCHEME_GCM if fixture == "hsm" else SCHEME_KWP)
    assert material.reveal() not in wrapped.blob
    assert hsm.unwrap(wrapped, AAD) == material
    with pytest.raises(IntegrityError):
        hsm.unwrap(wrapped, AAD + b"x")
    for i in range(len(wrapped.blob)):
        tampered = bytearray(wrapped.blob)
        tampered[i] ^= 0x01
        with pytest.raises(IntegrityError):
            hsm.unwrap(attrs.evolve(wrapped, blob=bytes(tampered)), AAD)
    with pytest.raises(IntegrityError):
        hsm.unwrap(attrs.evolve(wrapped, blob=wrapped.blob[:-1]), AAD)
    with pytest.raises(IntegrityError):
        hsm.unwrap(attrs.evolve(wrapped, hsm="soft"), AAD)
    # A failed unwrap is bad data, not a broken token: the token stays up.
    assert all(t["up"] for t in hsm.status().tokens)


def test_wrapping_is_randomised_under_gcm(hsm: Pkcs11Hsm) -> None:
    material = KeyMaterial(bytes(32))
    a, b = hsm.wrap(material, AAD), hsm.wrap(material, AAD)
    assert a.blob != b.blob
    assert hsm.unwrap(a, AAD) == hsm.unwrap(b, AAD) == material


def test_unknown_master_key_is_an_integrity_error(hsm: Pkcs11Hsm) -> None:
    wrapped = hsm.wrap(KeyMaterial(bytes(32)), AAD)
    with pytest.raises(IntegrityError):
        hsm.unwrap(attrs.evolve(wrapped, master_key_id="mk-nope"), AAD)


def test_random_comes_from_the_token_and_checks_bounds(hsm: Pkcs11Hsm) -> None:
    values = {hsm.random(32) for _ in range(20)}
    assert len(values) == 20 and all(len(v) == 32 for v in values)
    assert len(hsm.random(4096)) == 4096
    for bad in (0, -1, 4097, True, "8"):
        with pytest.raises(InvalidRequest):
            hsm.random(bad)  # type: ignore[arg-type]


def test_generate_master_key_keeps_old_blobs_opening(hsm: Pkcs11Hsm) -> None:
    first = hsm.status().master_key_id
    old = hsm.wrap(KeyMaterial(b"k" * 32), AAD)
    second = hsm.generate_master_key()
    assert second != first and hsm.status().master_key_id == second
    new = hsm.wrap(KeyMaterial(b"k" * 32), AAD)
    assert new.master_key_id == second
    assert hsm.unwrap(old, AAD) == hsm.unwrap(new, AAD) == KeyMaterial(b"k" * 32)


def test_initialize_is_idempotent(hsm: Pkcs11Hsm) -> None:
    current = hsm.status().master_key_id
    assert hsm.initialize() == {"master_key_id": current, "created": False}


def test_status_reports_each_token(hsm: Pkcs11Hsm) -> None:
    status = hsm.status()
    assert status.ready and not status.sealed
    # SoftHSM2 is honest about being software, and so are we.
    assert status.hardware is False and "not a hardware security module" in status.detail
    (token,) = status.tokens
    assert token["label"] == "kms-a" and token["up"] is True
    assert token["model"] == "SoftHSM project SoftHSM v2" and token["hardware"] is False
    assert token["current_master_key"] == status.master_key_id
    assert PIN not in repr(status)


def test_master_key_is_sensitive_and_never_extractable_per_pkcs11_tool(
        shared_realm, hsm: Pkcs11Hsm, key_label: str) -> None:
    listing = shared_realm.list_objects("kms-a")
    # pkcs11-tool prints one block per object; find ours by its label.
    blocks = [b for b in listing.split("Secret Key Object") if f"label:      {key_label}\n" in b]
    assert len(blocks) == 1, listing
    (block,) = blocks
    access = next(line for line in block.splitlines() if "Access:" in line)
    usage = next(line for line in block.splitlines() if "Usage:" in line)
    assert "sensitive" in access and "always sensitive" in access
    assert "never extractable" in access and "local" in access
    assert ", extractable" not in access.replace("never extractable", "")
    assert "AES length 32" in block
    assert "encrypt" in usage and "decrypt" in usage
    assert "wrap" not in usage and "derive" not in usage and "sign" not in usage
    # The same facts through the backend's own view.
    (key,) = hsm.master_keys()["kms-a"]
    assert key["sensitive"] and not key["extractable"] and key["local"]


def test_kwp_master_key_can_only_wrap(shared_realm, kwp_hsm: Pkcs11Hsm, key_label: str) -> None:
    listing = shared_realm.list_objects("kms-a")
    (block,) = [b for b in listing.split("Secret Key Object") if f"label:      {key_label}\n" in b]
    usage = next(line for line in block.splitlines() if "Usage:" in line)
    assert "wrap" in usage and "unwrap" in usage
    assert "encrypt" not in usage and "decrypt" not in usage


def test_threads_share_one_session_safely(hsm: Pkcs11Hsm) -> None:
    wrapped = [hsm.wrap(KeyMaterial(bytes([i]) * 32), AAD + bytes([i])) for i in range(8)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(200):
                assert hsm.unwrap(wrapped[i], AAD + bytes([i])) == KeyMaterial(bytes([i]) * 32)
                assert len(hsm.random(16)) == 16
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_wrong_pin_is_a_configuration_error_without_the_pin(shared_realm, key_label) -> None:
    settings = shared_realm.settings("kms-b", key_label=key_label)
    settings["pin"] = Secret.from_text("not-the-pin-123")
    backend = build(settings)
    with pytest.raises(ConfigurationError) as caught:
        backend.open()
    assert "not-the-pin-123" not in str(caught.value) and "PinIncorrect" in str(caught.value)


def test_unknown_token_label_is_unavailable(shared_realm, key_label) -> None:
    backend = build(shared_realm.settings("no-such-token", key_label=key_label))
    with pytest.raises(Unavailable):
        backend.open()


@pytest.mark.parametrize("change, message", [
    ({"pin": "inline-pin"}, "never written inline"),
    ({"mechanism": "aes-cbc"}, "mechanism must be one of"),
    ({"colour": "blue"}, "unknown settings colour"),
    ({"tokens": []}, "non-empty"),
])
def test_settings_are_checked(shared_realm, change, message) -> None:
    settings = shared_realm.settings("kms-a")
    settings.update(change)
    if "tokens" in change:
        settings.pop("token_label")
    with pytest.raises(ConfigurationError, match=message):
        build(settings)


def test_repr_and_settings_hide_the_pin(shared_realm) -> None:
    backend = build(shared_realm.settings("kms-a"))
    assert PIN not in repr(backend) and PIN not in repr(backend.settings)


def test_wrapped_key_from_another_master_key_label_does_not_open(
        shared_realm, hsm: Pkcs11Hsm) -> None:
    other = build(shared_realm.settings("kms-a", key_label="mk-other-label"))
    other.open()
    other.initialize()
    try:
        wrapped = other.wrap(KeyMaterial(bytes(32)), AAD)
        with pytest.raises(IntegrityError):
            hsm.unwrap(WrappedKey("pkcs11", wrapped.master_key_id, wrapped.blob), AAD)
    finally:
        other.close()


def test_mechanism_the_token_lacks_is_refused_at_open(make_realm, key_label) -> None:
    # SoftHSM2 can limit its mechanisms per installation: this one has no AES-GCM.
    realm = make_realm("kms-a",
                       extra_conf="slots.mechanisms = CKM_AES_KEY_WRAP_PAD,CKM_AES_KEY_GEN\n")
    backend = build(realm.settings("kms-a", key_label=key_label))
    with pytest.raises(ConfigurationError, match="supports: aes-key-wrap-pad"):
        backend.open()
    assert not backend.tokens[0].up  # logged out again
    fallback = build(realm.settings("kms-a", key_label=key_label, mechanism="aes-key-wrap-pad"))
    fallback.open()
    fallback.initialize()
    material = KeyMaterial(fallback.random(32))
    assert fallback.unwrap(fallback.wrap(material, AAD), AAD) == material
    fallback.close()

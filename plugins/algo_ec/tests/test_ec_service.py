"""KeyService sign/verify/public_key with real EC keys in an embedded deployment.

These exercise the core's signature path (version prefix, rotation, version
states, purposes, batches) on a real deployment: soft HSM, SQLite store.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kmsframe.errors import (
    InvalidRequest,
    KeyDisabled,
    OperationNotAllowed,
    PayloadTooLarge,
    VersionNotFound,
    VersionNotUsable,
)
from kmsframe.testing import embedded_deployment


@pytest.fixture
def service(tmp_path):
    deployment = embedded_deployment(tmp_path, extra_plugins=("algo_ec", "algo_hmac"))
    yield deployment.service
    deployment.close()


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_signature_carries_the_version_and_verifies(service, algorithm: str) -> None:
    service.create_key("signer", algorithm=algorithm)
    result = service.sign("signer", b"transfer 100.00 CNY")
    assert result.version == 10001 and result.signature.startswith("10001")
    assert service.verify("signer", b"transfer 100.00 CNY", result.signature) is True
    assert service.verify("signer", b"transfer 900.00 CNY", result.signature) is False


def test_the_signature_body_verifies_with_the_exported_public_key(service) -> None:
    key = service.create_key("p256", algorithm="ecdsa-p256")
    signature = service.sign("p256", b"message").signature
    exported = service.public_key("p256")
    assert exported.version == 10001
    assert exported.pem == key.primary.public_key
    public = serialization.load_pem_public_key(exported.pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(signature[5:]), b"message", ec.ECDSA(hashes.SHA256()))


def test_rotation_new_signatures_use_the_new_version_old_ones_still_verify(service) -> None:
    service.create_key("rot", algorithm="ed25519")
    old = service.sign("rot", b"m").signature
    key = service.rotate("rot")
    assert key.primary_version == 10002
    new_public = key.version(10002).public_key
    assert new_public and new_public != key.version(10001).public_key
    new = service.sign("rot", b"m").signature
    assert new.startswith("10002")
    assert service.verify("rot", b"m", old) is True  # 10001 is expired now: still verifies
    assert service.verify("rot", b"m", new) is True
    assert service.public_key("rot").version == 10002
    assert service.public_key("rot", 10001).pem == key.version(10001).public_key
    # A signature by 10001 relabelled as 10002 does not verify.
    assert service.verify("rot", b"m", "10002" + old[5:]) is False


def test_retired_and_destroyed_versions_no_longer_verify(service) -> None:
    service.create_key("ret", algorithm="ed25519")
    old = service.sign("ret", b"m").signature
    service.rotate("ret")
    service.set_version_state("ret", 10001, "retired")
    assert service.verify("ret", b"m", old) is False
    with pytest.raises(VersionNotUsable):
        service.public_key("ret", 10001)
    service.set_version_state("ret", 10001, "destroyed")
    assert service.verify("ret", b"m", old) is False


@pytest.mark.parametrize("text", ["", "10001", "1000", "abcde" + "AAAA", "10001!!!!",
                                  "99999" + "AAAA", "10001" + "A" * 7])
def test_malformed_or_unknown_signatures_are_simply_invalid(service, text: str) -> None:
    service.create_key("k", algorithm="ed25519")
    assert service.verify("k", b"m", text) is False


def test_purpose_is_enforced(service) -> None:
    service.create_key("sig", algorithm="ed25519")
    service.create_key("mac", algorithm="hmac-sha256")
    with pytest.raises(OperationNotAllowed):
        service.encrypt("sig", b"x")
    with pytest.raises(OperationNotAllowed):
        service.mac("sig", b"x")
    with pytest.raises(OperationNotAllowed):
        service.verify_mac("sig", b"x", "10001AAAA")
    with pytest.raises(OperationNotAllowed):
        service.sign("mac", b"x")
    with pytest.raises(OperationNotAllowed):
        service.verify("mac", b"x", service.mac("mac", b"x").mac)
    with pytest.raises(OperationNotAllowed):
        service.public_key("mac")
    with pytest.raises(InvalidRequest):
        service.create_key("bad", algorithm="ed25519", purpose="encrypt")


def test_request_errors(service) -> None:
    service.create_key("k", algorithm="ed25519")
    with pytest.raises(InvalidRequest):
        service.sign("k", "text, not bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        service.sign("k", b"m", {"unknown": 1})
    with pytest.raises(InvalidRequest):
        service.sign("k", b"m", ["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        service.sign("k", b"x" * (service.settings.max_plaintext_bytes + 1))
    with pytest.raises(VersionNotFound):
        service.public_key("k", 10009)
    with pytest.raises(InvalidRequest):
        service.verify("k", b"m", b"10001AAAA")  # type: ignore[arg-type]


def test_disabled_key_refuses_everything(service) -> None:
    service.create_key("k", algorithm="ed25519")
    signature = service.sign("k", b"m").signature
    service.disable("k")
    with pytest.raises(KeyDisabled):
        service.sign("k", b"m")
    with pytest.raises(KeyDisabled):
        service.verify("k", b"m", signature)
    with pytest.raises(KeyDisabled):
        service.public_key("k")


def test_pre_active_public_key_is_published_before_rotation(service) -> None:
    from kmsframe.model import RotationPolicy

    service.create_key("k", algorithm="ed25519",
                       rotation_policy=RotationPolicy(period_seconds=3600, notice_seconds=600))
    key = service.announce_rotation("k")
    assert key is not None and key.version(10002).state.value == "pre_active"
    assert service.public_key("k", 10002).pem == key.version(10002).public_key
    assert service.sign("k", b"m").version == 10001


def test_sign_and_verify_are_batchable(service) -> None:
    service.create_key("k", algorithm="ecdsa-p256")
    signed = service.batch(service.sign, [{"name": "k", "message": b"a"},
                                          {"name": "k", "message": "not bytes"},
                                          {"name": "nope", "message": b"c"},
                                          {"name": "k", "wrong_field": b"d"}])
    assert signed[0].error is None and signed[0].value.signature.startswith("10001")
    assert [type(r.error).__name__ for r in signed[1:]] == [
        "InvalidRequest", "KeyNotFound", "InvalidRequest"]
    checked = service.batch(service.verify, [
        {"name": "k", "message": b"a", "signature": signed[0].value.signature},
        {"name": "k", "message": b"b", "signature": signed[0].value.signature}])
    assert [r.value for r in checked] == [True, False]


def test_minimum_decryption_version_also_stops_verification(service) -> None:
    service.create_key("k", algorithm="ed25519")
    old = service.sign("k", b"m").signature
    service.rotate("k")
    assert service.verify("k", b"m", old) is True
    service.set_min_decryption_version("k", 10002)
    assert service.verify("k", b"m", old) is False
    assert service.verify("k", b"m", service.sign("k", b"m").signature) is True

"""KeyService mac/verify_mac with HMAC-SHA256 keys in an embedded deployment."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from kmsframe.ciphertext import wrap_aad
from kmsframe.errors import OperationNotAllowed
from kmsframe.testing import embedded_deployment


@pytest.fixture
def service(tmp_path):
    deployment = embedded_deployment(tmp_path, extra_plugins=("algo_hmac",))
    yield deployment.service
    deployment.close()


def test_mac_carries_the_version_and_verifies(service) -> None:
    key = service.create_key("mac", algorithm="hmac-sha256")
    assert key.purpose.value == "mac" and key.primary.public_key is None
    result = service.mac("mac", b"amount=100.00")
    assert result.version == 10001 and result.mac.startswith("10001")
    assert len(base64.b64decode(result.mac[5:])) == 32
    assert service.mac("mac", b"amount=100.00") == result  # deterministic
    assert service.verify_mac("mac", b"amount=100.00", result.mac) is True
    assert service.verify_mac("mac", b"amount=900.00", result.mac) is False


def test_tags_from_a_retired_version_fail_but_expired_ones_verify(service) -> None:
    service.create_key("mac", algorithm="hmac-sha256")
    old = service.mac("mac", b"m").mac
    service.rotate("mac")
    new = service.mac("mac", b"m").mac
    assert new.startswith("10002") and new[5:] != old[5:]
    assert service.verify_mac("mac", b"m", old) is True
    service.set_version_state("mac", 10001, "retired")
    assert service.verify_mac("mac", b"m", old) is False
    assert service.verify_mac("mac", b"m", new) is True


def test_tampered_and_malformed_tags_are_invalid(service) -> None:
    service.create_key("mac", algorithm="hmac-sha256")
    tag = service.mac("mac", b"m").mac
    raw = bytearray(base64.b64decode(tag[5:]))
    raw[-1] ^= 1
    assert service.verify_mac("mac", b"m", "10001" + base64.b64encode(bytes(raw)).decode()) is False
    assert service.verify_mac("mac", b"m", tag[:-4]) is False
    assert service.verify_mac("mac", b"m", "garbage") is False


def test_a_mac_key_does_nothing_else(service) -> None:
    service.create_key("mac", algorithm="hmac-sha256")
    for call in (lambda: service.encrypt("mac", b"x"), lambda: service.sign("mac", b"x"),
                 lambda: service.public_key("mac"), lambda: service.generate_data_key("mac")):
        with pytest.raises(OperationNotAllowed):
            call()


def test_mac_is_batchable(service) -> None:
    service.create_key("mac", algorithm="hmac-sha256")
    results = service.batch(service.mac, [{"name": "mac", "message": b"a"},
                                          {"name": "mac", "message": b"b"}])
    assert [r.value.mac[:5] for r in results] == ["10001", "10001"]
    checks = service.batch(service.verify_mac, [
        {"name": "mac", "message": b"a", "mac": results[0].value.mac},
        {"name": "mac", "message": b"a", "mac": results[1].value.mac}])
    assert [c.value for c in checks] == [True, False]


def test_the_tag_is_plain_hmac_sha256_of_the_message(service) -> None:
    """Independent check: the tag equals hashlib's HMAC under the unwrapped key."""
    service.create_key("mac", algorithm="hmac-sha256")
    key = service.get_key("mac")
    material = service.hsm.unwrap(key.primary.wrapped,
                                  wrap_aad(key.id, 10001, "hmac-sha256", "mac"))
    expected = hmac.new(material.reveal(), b"m", hashlib.sha256).digest()
    assert base64.b64decode(service.mac("mac", b"m").mac[5:]) == expected

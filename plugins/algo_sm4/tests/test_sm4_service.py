"""SM4 and HMAC-SM3 keys through KeyService in an embedded deployment."""

from __future__ import annotations

import pytest

from kmsframe.errors import DecryptionFailed, OperationNotAllowed
from kmsframe.testing import embedded_deployment


@pytest.fixture
def service(tmp_path):
    deployment = embedded_deployment(tmp_path, extra_plugins=("algo_sm4",))
    yield deployment.service
    deployment.close()


@pytest.mark.parametrize("algorithm", ["sm4-gcm", "sm4-cbc-hmac-sm3"])
def test_encrypt_rotate_decrypt_and_context(service, algorithm: str) -> None:
    service.create_key("k", algorithm=algorithm)
    old = service.encrypt("k", b"card 6222020000000000", {"merchant": "m1"})
    assert old.ciphertext.startswith("10001")
    with pytest.raises(DecryptionFailed):
        service.decrypt("k", old.ciphertext, {"merchant": "m2"})
    service.rotate("k")
    assert service.decrypt("k", old.ciphertext, {"merchant": "m1"}) == b"card 6222020000000000"
    assert service.encrypt("k", b"x").ciphertext.startswith("10002")
    with pytest.raises(OperationNotAllowed):
        service.public_key("k")


def test_sm4_data_keys(service) -> None:
    service.create_key("k", algorithm="sm4-gcm")
    data_key = service.generate_data_key("k")
    assert data_key.plaintext is not None and len(data_key.plaintext) == 16
    assert service.decrypt("k", data_key.ciphertext) == data_key.plaintext.reveal()


def test_hmac_sm3_keys(service) -> None:
    service.create_key("mac", algorithm="hmac-sm3")
    tag = service.mac("mac", b"m").mac
    assert service.verify_mac("mac", b"m", tag) is True
    assert service.verify_mac("mac", b"n", tag) is False
    with pytest.raises(OperationNotAllowed):
        service.encrypt("mac", b"m")

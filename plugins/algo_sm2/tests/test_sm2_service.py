"""SM2 keys through KeyService, with ``openssl`` on the other side of every public-key path.

kmsframe's signature (prefix stripped, base64 decoded) verifies with openssl
from the exported public key; openssl encrypts to the exported public key and
kmsframe decrypts. The private key never leaves the deployment here.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from kmsframe.errors import InvalidRequest, OperationNotAllowed
from kmsframe.testing import embedded_deployment


@pytest.fixture
def service(tmp_path):
    deployment = embedded_deployment(tmp_path / "kms", extra_plugins=("algo_sm2",))
    yield deployment.service
    deployment.close()


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True)


def test_sm2_needs_an_explicit_purpose(service) -> None:
    with pytest.raises(InvalidRequest):
        service.create_key("k", algorithm="sm2")
    with pytest.raises(InvalidRequest):
        service.create_key("k", algorithm="sm2", purpose="mac")


def test_a_signing_key_cannot_encrypt_and_an_encryption_key_cannot_sign(service) -> None:
    service.create_key("signer", algorithm="sm2", purpose="sign")
    service.create_key("box", algorithm="sm2", purpose="encrypt")
    with pytest.raises(OperationNotAllowed):
        service.encrypt("signer", b"x")
    with pytest.raises(OperationNotAllowed):
        service.decrypt("signer", "10001AAAA")
    with pytest.raises(OperationNotAllowed):
        service.sign("box", b"x")
    with pytest.raises(OperationNotAllowed):
        service.verify("box", b"x", "10001AAAA")


@pytest.mark.parametrize("distid", [None, "merchant-0042@bank.example"])
def test_openssl_verifies_a_service_signature_from_the_exported_public_key(
        service, tmp_path: Path, distid: str | None) -> None:
    service.create_key("signer", algorithm="sm2", purpose="sign")
    message = "订单 20261204-0001 金额 100.00".encode()
    options = None if distid is None else {"distinguishing_id": distid}
    signed = service.sign("signer", message, options)
    assert signed.signature.startswith("10001")
    assert service.verify("signer", message, signed.signature, options) is True
    exported = service.public_key("signer")
    (tmp_path / "public.pem").write_text(exported.pem)
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(base64.b64decode(signed.signature[5:]))
    done = openssl("pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "public.pem"),
                   "-rawin", "-digest", "sm3", "-pkeyopt",
                   f"distid:{distid or '1234567812345678'}",
                   "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig"))
    assert done.returncode == 0 and b"Signature Verified Successfully" in done.stdout


def test_distinguishing_id_must_match_at_verify(service) -> None:
    service.create_key("signer", algorithm="sm2", purpose="sign")
    signed = service.sign("signer", b"m", {"distinguishing_id": "alice"})
    assert service.verify("signer", b"m", signed.signature, {"distinguishing_id": "alice"})
    assert not service.verify("signer", b"m", signed.signature)
    assert not service.verify("signer", b"m", signed.signature, {"distinguishing_id": "bob"})


def test_service_decrypts_what_openssl_encrypted_to_the_exported_key(service,
                                                                      tmp_path: Path) -> None:
    service.create_key("box", algorithm="sm2", purpose="encrypt")
    exported = service.public_key("box")
    (tmp_path / "public.pem").write_text(exported.pem)
    (tmp_path / "pt").write_bytes(b"user password P@ssw0rd")
    done = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "public.pem"),
                   "-in", str(tmp_path / "pt"))
    assert done.returncode == 0, done.stderr
    ciphertext = f"{exported.version:05d}" + base64.b64encode(done.stdout).decode()
    assert service.decrypt("box", ciphertext) == b"user password P@ssw0rd"


def test_encrypt_rotate_decrypt_old_and_new(service) -> None:
    service.create_key("box", algorithm="sm2", purpose="encrypt")
    old = service.encrypt("box", b"old secret")
    key = service.rotate("box")
    assert key.version(10002).public_key is not None
    new = service.encrypt("box", b"new secret")
    assert (old.version, new.version) == (10001, 10002)
    assert service.decrypt("box", old.ciphertext) == b"old secret"
    assert service.decrypt("box", new.ciphertext) == b"new secret"
    assert service.rewrap("box", old.ciphertext).ciphertext.startswith("10002")


def test_context_is_refused_because_sm2_cannot_bind_it(service) -> None:
    service.create_key("box", algorithm="sm2", purpose="encrypt")
    with pytest.raises(InvalidRequest):
        service.encrypt("box", b"x", {"order": "1"})
    ciphertext = service.encrypt("box", b"x").ciphertext
    with pytest.raises(InvalidRequest):
        service.decrypt("box", ciphertext, {"order": "1"})


def test_plaintext_limits_are_request_errors(service) -> None:
    service.create_key("box", algorithm="sm2", purpose="encrypt")
    with pytest.raises(InvalidRequest):
        service.encrypt("box", b"")
    with pytest.raises(InvalidRequest):
        service.encrypt("box", b"x" * 256)


def test_a_key_record_edited_to_another_purpose_no_longer_opens(tmp_path) -> None:
    """The purpose is bound into the wrapped key: editing the stored record to
    turn a signing key into an encryption key makes its material unusable."""
    from kmsframe.errors import IntegrityError

    deployment = embedded_deployment(tmp_path / "edit", extra_plugins=("algo_sm2",))
    try:
        service = deployment.service
        service.create_key("signer", algorithm="sm2", purpose="sign")
        doc = deployment.storage.get("key", "signer")
        assert doc is not None and doc.data["purpose"] == "sign"
        deployment.storage.put("key", "signer", {**doc.data, "purpose": "encrypt"}, doc.revision)
        service.cache.invalidate()
        with pytest.raises(IntegrityError):
            service.encrypt("signer", b"x")
    finally:
        deployment.close()

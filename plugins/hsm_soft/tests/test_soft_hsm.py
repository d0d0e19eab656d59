"""Sealing, unsealing and the keystore file of the software HSM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kmsframe_hsm_soft import SoftHsm, build

from kmsframe.errors import ConfigurationError, HsmSealed
from kmsframe.secrets import KeyMaterial, Secret

AAD = b"aad"


def make(tmp_path: Path, secret: bytes | None = b"s3cret-passphrase") -> SoftHsm:
    return SoftHsm(tmp_path / "ks.json", unseal_secret=None if secret is None else Secret(secret),
                   scrypt_n=2**10)


def test_keystore_holds_no_master_key_in_the_clear(tmp_path: Path) -> None:
    hsm = make(tmp_path)
    hsm.initialize()
    material = KeyMaterial(os.urandom(32))
    wrapped = hsm.wrap(material, AAD)
    text = (tmp_path / "ks.json").read_text()
    doc = json.loads(text)
    assert doc["format"] == 1 and doc["protection"]["method"] == "scrypt"
    # The master key itself is never in the file: only sealed blobs are.
    mk = hsm._master_keys[doc["current"]]  # noqa: SLF001 - white-box check of the file
    assert mk is not None
    assert b"s3cret-passphrase" not in text.encode()
    assert oct((tmp_path / "ks.json").stat().st_mode & 0o777) == "0o600"
    assert hsm.unwrap(wrapped, AAD) == material


def test_restart_with_the_same_secret_unwraps_old_blobs(tmp_path: Path) -> None:
    first = make(tmp_path)
    first.initialize()
    material = KeyMaterial(os.urandom(32))
    wrapped = first.wrap(material, AAD)
    first.close()
    second = make(tmp_path)
    second.open()
    assert second.unwrap(wrapped, AAD) == material


def test_wrong_secret_stays_sealed(tmp_path: Path) -> None:
    make(tmp_path).initialize()
    wrong = make(tmp_path, b"not the passphrase")
    with pytest.raises(HsmSealed):
        wrong.open()
    assert wrong.status().sealed


def test_without_a_secret_it_opens_sealed_and_refuses_to_serve(tmp_path: Path) -> None:
    make(tmp_path).initialize()
    sealed = make(tmp_path, None)
    sealed.open()
    status = sealed.status()
    assert status.sealed and not status.ready and not status.hardware
    assert "NOT a hardware" in status.detail
    with pytest.raises(HsmSealed):
        sealed.wrap(KeyMaterial(os.urandom(32)), AAD)
    sealed.unseal(secret=Secret(b"s3cret-passphrase"))
    assert sealed.status().ready


def test_open_warns_loudly_that_it_is_not_hardware(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make(tmp_path).initialize()
    with caplog.at_level("WARNING"):
        make(tmp_path).open()
    assert any("NOT a hardware security module" in r.message for r in caplog.records)


def test_shares_unseal_with_threshold_and_not_below(tmp_path: Path) -> None:
    hsm = SoftHsm(tmp_path / "ks.json")
    shares = hsm.initialize({"shares": 5, "threshold": 3})["shares"]
    material = KeyMaterial(os.urandom(32))
    wrapped = hsm.wrap(material, AAD)
    hsm.close()
    for chosen in ([shares[0], shares[2], shares[4]], [shares[1], shares[3], shares[4], shares[0]]):
        again = SoftHsm(tmp_path / "ks.json", unseal_shares=chosen)
        again.open()
        assert again.unwrap(wrapped, AAD) == material
    with pytest.raises(HsmSealed):
        SoftHsm(tmp_path / "ks.json", unseal_shares=shares[:2]).open()
    # Three shares, one of them forged: the combined key fails the check.
    forged = Secret(shares[0].reveal_text()[:-4].encode() + b"0000")
    with pytest.raises(HsmSealed):
        SoftHsm(tmp_path / "ks.json", unseal_shares=[forged, shares[1], shares[2]]).open()


def test_share_repr_is_redacted(tmp_path: Path) -> None:
    shares = SoftHsm(tmp_path / "ks.json").initialize({"shares": 3, "threshold": 2})["shares"]
    assert "kms-share" not in repr(shares)


def test_missing_keystore_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="kmsframe init"):
        make(tmp_path).open()


def test_inline_secret_in_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"\$env"):
        build({"data_dir": str(tmp_path), "unseal_secret": "inline-password"})
    with pytest.raises(ConfigurationError, match="unknown settings"):
        build({"data_dir": str(tmp_path), "pin": "x"})


def test_a_second_process_sees_a_new_master_key(tmp_path: Path) -> None:
    a, b = make(tmp_path), make(tmp_path)
    a.initialize()
    b.open()
    a.generate_master_key()
    material = KeyMaterial(os.urandom(32))
    wrapped = a.wrap(material, AAD)
    assert b.unwrap(wrapped, AAD) == material

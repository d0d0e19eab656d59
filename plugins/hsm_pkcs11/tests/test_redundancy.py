"""Two tokens (two SoftHSM2 installations, each its own module) holding the
same master key from custodian shares; one breaks mid-load, work goes on."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator

import attrs
import pytest
from kmsframe_hsm_pkcs11 import Pkcs11Hsm, build
from kmsframe_hsm_pkcs11.shares import combine
from kmsframe_hsm_pkcs11.testing import PIN, Realm, pair_settings

from kmsframe.config import DeploymentConfig
from kmsframe.deployment import Deployment
from kmsframe.errors import InvalidRequest, Unavailable
from kmsframe.secrets import KeyMaterial, Secret

AAD = b"redundancy-aad"


@pytest.fixture
def realms(make_realm) -> tuple[Realm, Realm]:
    return make_realm("kms-a"), make_realm("kms-b")


@pytest.fixture
def pair(realms, key_label) -> Iterator[tuple[Pkcs11Hsm, list[Secret]]]:
    backend = build(pair_settings(*realms, key_label))
    backend.open()
    shown = backend.initialize({"shares": 3, "threshold": 2})
    assert shown["created"] and len(shown["shares"]) == 3
    yield backend, shown["shares"]
    backend.close()


def test_both_tokens_hold_the_same_non_extractable_master_key(pair, realms) -> None:
    hsm, shares = pair
    mk_id = hsm.status().master_key_id
    a, b = hsm.tokens
    blob = a.wrap(mk_id, KeyMaterial(b"w" * 32), AAD)
    assert b.unwrap(mk_id, blob, AAD) == KeyMaterial(b"w" * 32)
    for label, keys in hsm.master_keys().items():
        (key,) = keys
        assert key["id"] == mk_id
        assert key["sensitive"] and not key["extractable"]
        # Honest: a key loaded from shares was not generated in the token.
        assert not key["local"] and not key["never_extractable"]
    for realm, label in zip(realms, ("kms-a", "kms-b")):
        listing = realm.list_objects(label)
        assert "sensitive" in listing and "never extractable" not in listing
        assert mk_id.encode().hex() in listing.replace(" ", "").lower() or mk_id in listing
    # Shares: any two rebuild it, each names the key, one alone does not.
    assert combine(shares[1:])[0] == mk_id
    with pytest.raises(InvalidRequest):
        combine(shares[:1])


def test_plain_generate_is_refused_with_several_tokens(pair) -> None:
    hsm, _ = pair
    with pytest.raises(InvalidRequest, match="custodian shares"):
        hsm.generate_master_key()


def test_token_deleted_mid_load_operations_continue(realms, key_label, tmp_path) -> None:
    a, b = realms
    backend = build(pair_settings(a, b, key_label))
    backend.open()
    backend.initialize({"shares": 2, "threshold": 2})
    backend.close()
    pin_file = a.pin_file
    hsm_table = pair_settings(a, b, key_label)
    hsm_table["pin"] = f"$file:{pin_file}"
    config = DeploymentConfig.from_mapping({
        "deployment": {"data_dir": str(tmp_path),
                       "plugins": ["hsm_pkcs11", "algo_aes", "storage_sql"]},
        "hsm": hsm_table,
        "storage": {"backend": "sql", "url": f"sqlite:///{tmp_path / 'kms.db'}"},
        # A tiny cache TTL so every operation goes back to the HSM to unwrap.
        "keys": {"cache_ttl_seconds": 0.0001},
    })
    with Deployment.open(config) as deployment:
        service = deployment.service
        service.create_key("payments")
        service.rotate("payments")
        texts = [service.encrypt("payments", f"card {i}".encode()).ciphertext for i in range(5)]
        before = deployment.hsm.status()
        assert [t["up"] for t in before.tokens] == [True, True]
        served = 0
        for i in range(300):
            if i == 100:
                shutil.rmtree(a.token_dir("kms-a"))  # the preferred token vanishes
            ciphertext = service.encrypt("payments", b"pan-%d" % i).ciphertext
            assert service.decrypt("payments", ciphertext) == b"pan-%d" % i
            assert service.decrypt("payments", texts[i % 5]) == f"card {i % 5}".encode()
            served += 1
        assert served == 300
        # Management that needs a wrap also goes on, on the surviving token.
        service.rotate("payments")
        assert service.decrypt("payments", texts[0]) == b"card 0"
        status = deployment.hsm.status()
        by_label = {t["label"]: t for t in status.tokens}
        assert by_label["kms-a"]["up"] is False and by_label["kms-a"]["error"]
        assert by_label["kms-b"]["up"] is True
        assert status.ready


def test_finalized_library_reconnects(pair) -> None:
    hsm, _ = pair
    wrapped = hsm.wrap(KeyMaterial(b"r" * 32), AAD)
    first = hsm.tokens[0]
    assert first.library is not None
    first.library.handle.finalize()  # as if the module was reset under us
    # Served by the other token at once, first marked down...
    assert hsm.unwrap(wrapped, AAD) == KeyMaterial(b"r" * 32)
    assert first.error == "library not initialized"
    # ...and reconnected once retry_seconds have passed.
    time.sleep(0.3)
    assert hsm.unwrap(wrapped, AAD) == KeyMaterial(b"r" * 32)
    assert first.up
    assert [t["up"] for t in hsm.status().tokens] == [True, True]


def test_all_tokens_down_is_unavailable(pair, realms) -> None:
    hsm, _ = pair
    wrapped = hsm.wrap(KeyMaterial(b"z" * 32), AAD)
    for realm, label in zip(realms, ("kms-a", "kms-b")):
        shutil.rmtree(realm.token_dir(label))
    with pytest.raises(Unavailable) as caught:
        hsm.unwrap(wrapped, AAD)
    assert caught.value.code == "unavailable"
    status = hsm.status()
    assert not status.ready and not any(t["up"] for t in status.tokens)


def test_restore_loads_the_master_key_into_a_replacement_token(make_realm, key_label) -> None:
    a = make_realm("kms-a")
    b = make_realm("kms-b")  # empty replacement token, set up later
    first = build(a.settings("kms-a", key_label=key_label))
    first.open()
    shown = first.initialize({"shares": 5, "threshold": 3})
    wrapped = first.wrap(KeyMaterial(b"q" * 32), AAD)
    first.close()

    pair = build(pair_settings(a, b, key_label))
    pair.open()
    try:
        assert pair.tokens[1].current() is None
        with pytest.raises(InvalidRequest, match="needs 3"):
            pair.restore_master_key(shown["shares"][:2], token_labels=["kms-b"])
        parts = shown["shares"][0].reveal_text().split(":")
        parts[5] = ("%064x" % (int(parts[5], 16) ^ 1))  # one custodian's share altered
        forged = [Secret.from_text(":".join(parts)), *shown["shares"][1:3]]
        with pytest.raises(InvalidRequest, match="check value mismatch"):
            pair.restore_master_key(forged, token_labels=["kms-b"])
        assert pair.tokens[1].master_keys() == []  # refused before touching the token
        report = pair.restore_master_key(shown["shares"][2:], token_labels=["kms-b"])
        assert report["master_key_id"] == shown["master_key_id"]
        assert report["loaded_into"] == ["kms-b"]
        assert pair.tokens[1].current() == shown["master_key_id"]
        assert pair.tokens[1].unwrap(shown["master_key_id"], wrapped.blob, AAD) == \
            KeyMaterial(b"q" * 32)
    finally:
        pair.close()


def test_ceremony_refused_while_a_token_is_down(pair, realms) -> None:
    hsm, _ = pair
    before = hsm.status().master_key_id
    shutil.rmtree(realms[1].token_dir("kms-b"))
    with pytest.raises(Unavailable, match="kms-b"):
        hsm.generate_master_key_with_shares(3, 2)
    assert hsm.tokens[0].current() == before
    assert [k["id"] for k in hsm.master_keys()["kms-a"]] == [before]


def test_failures_are_logged_without_secrets(pair, caplog) -> None:
    hsm, shares = pair
    caplog.set_level(logging.DEBUG)
    wrapped = hsm.wrap(KeyMaterial(b"s" * 32), AAD)
    hsm.tokens[0].library.handle.finalize()
    assert hsm.unwrap(wrapped, AAD) == KeyMaterial(b"s" * 32)
    time.sleep(0.3)
    hsm.status()
    text = caplog.text + repr(hsm.status())
    assert "kms-a" in text and "library not initialized" in text  # the operator learns why
    assert PIN not in text
    assert not any(s.reveal_text() in text for s in shares)
    assert (b"s" * 32).hex() not in text


def test_refused_login_fails_over_and_is_not_retried(realms, key_label, monkeypatch) -> None:
    a, b = realms
    hsm = build(pair_settings(a, b, key_label))
    hsm.open()
    hsm.initialize({"shares": 2, "threshold": 2})
    wrapped = hsm.wrap(KeyMaterial(b"p" * 32), AAD)
    first = hsm.tokens[0]
    # The session is lost and, at reconnect, the PIN is refused (changed by an SO).
    first._session.close()
    first._refused = None
    first.spec = attrs.evolve(first.spec, pin=Secret.from_text("wrong-pin-0000"))
    attempts = []
    real_connect = first.connect

    def counting_connect() -> None:
        attempts.append(1)
        real_connect()

    monkeypatch.setattr(first, "connect", counting_connect)
    for _ in range(5):
        assert hsm.unwrap(wrapped, AAD) == KeyMaterial(b"p" * 32)  # served by kms-b
        time.sleep(0.25)  # longer than retry_seconds
    assert len(attempts) == 1  # one refused login, never retried: PIN tries are precious
    by_label = {t["label"]: t for t in hsm.status().tokens}
    assert by_label["kms-a"]["up"] is False and "PinIncorrect" in by_label["kms-a"]["error"]
    assert by_label["kms-b"]["up"] is True
    hsm.close()


def test_restore_keeps_the_mechanism_the_key_was_made_for(make_realm, key_label) -> None:
    a, b = make_realm("kms-a"), make_realm("kms-b")
    kwp = build(a.settings("kms-a", key_label=key_label, mechanism="aes-key-wrap-pad"))
    kwp.open()
    shown = kwp.initialize({"shares": 2, "threshold": 2})
    wrapped = kwp.wrap(KeyMaterial(b"m" * 32), AAD)
    kwp.close()
    # The replacement deployment is now configured for AES-GCM.
    gcm = build(b.settings("kms-b", key_label=key_label, mechanism="aes-gcm"))
    gcm.open()
    try:
        gcm.restore_master_key(shown["shares"])
        assert gcm.unwrap(wrapped, AAD) == KeyMaterial(b"m" * 32)
        # New wraps follow the key's capabilities (key-wrap-pad), not the setting.
        again = gcm.wrap(KeyMaterial(b"n" * 32), AAD)
        assert again.blob[1] == 0x02 and gcm.unwrap(again, AAD) == KeyMaterial(b"n" * 32)
        assert gcm.status().ready
        listing = b.list_objects("kms-b")
        assert "wrap, unwrap" in listing and "encrypt" not in listing
    finally:
        gcm.close()

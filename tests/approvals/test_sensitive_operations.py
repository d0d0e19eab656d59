"""What approved requests do: export, destruction, role grants."""

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmsframe import ciphertext as ct
from kmsframe.errors import DecryptionFailed, InvalidRequest, NotFound
from kmsframe.export import open_export
from kmsframe.testing.people import fresh_code, make_user


@pytest.fixture
def people(deployment):
    make_user(deployment, "ka0", "key_admin")
    make_user(deployment, "ka1", "key_admin")
    make_user(deployment, "sa1", "security_admin")
    make_user(deployment, "sys0", "system_admin")
    make_user(deployment, "sys1", "system_admin")
    deployment.service.create_key("cards")
    return deployment


def p(d, name):
    return d.access.users.get(name).principal()


def approve(d, rid, name):
    return d.access.approvals.approve(rid, p(d, name), fresh_code(d, name))


def pem(public_key):
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_export_is_wrapped_to_the_recipient_and_opens_only_there(people):
    d = people
    recipient = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    request = d.access.approvals.submit(
        "keys.export", {"key": "cards", "recipient": "dr-site",
                        "public_key_pem": pem(recipient.public_key())}, p(d, "ka0"))
    assert approve(d, request.id, "ka1").status == "pending"
    done = approve(d, request.id, "sa1")
    assert done.status == "executed"
    document = done.result
    assert document["recipient"] == "dr-site" and document["version"] == 10001
    material = open_export(document, recipient)
    # The exported key really is the working key: it opens the service's ciphertext.
    text = d.service.encrypt("cards", b"pan 4111").ciphertext
    version, body = ct.decode(text)
    key = d.service.get_key("cards")
    plain = AESGCM(material.reveal()).decrypt(body[:12], body[12:], ct.data_aad(key.id, version))
    assert plain == b"pan 4111"
    # ... and only the named recipient can open it; the header cannot be altered.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(DecryptionFailed):
        open_export(document, stranger)
    with pytest.raises(DecryptionFailed):
        open_export({**document, "recipient": "attacker"}, recipient)
    assert base64.b64encode(material.reveal()).decode() not in repr(document)


@pytest.mark.parametrize("make_key", [
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
    lambda: ec.generate_private_key(ec.SECP256R1()).public_key(),
])
def test_export_to_a_weak_or_wrong_recipient_key_is_refused_up_front(people, make_key):
    with pytest.raises(InvalidRequest):
        people.access.approvals.submit(
            "keys.export", {"key": "cards", "recipient": "x", "public_key_pem": pem(make_key())},
            p(people, "ka0"))


def test_export_of_a_missing_key_is_refused_up_front(people):
    recipient = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(NotFound):
        people.access.approvals.submit(
            "keys.export", {"key": "nope", "recipient": "x",
                            "public_key_pem": pem(recipient.public_key())}, p(people, "ka0"))


def test_key_destruction_needs_approval(people):
    d = people
    request = d.access.approvals.submit("keys.schedule_deletion",
                                        {"key": "cards", "waiting_days": 7}, p(d, "ka0"))
    assert d.service.get_key("cards").status.value == "enabled"
    approve(d, request.id, "ka1")
    approve(d, request.id, "sa1")
    assert d.service.get_key("cards").status.value == "pending_deletion"


def test_version_destruction_needs_approval(people):
    d = people
    d.service.rotate("cards")
    d.service.set_version_state("cards", 10001, "retired")
    request = d.access.approvals.submit("versions.destroyed", {"key": "cards", "version": 10001},
                                        p(d, "ka0"))
    approve(d, request.id, "ka1")
    approve(d, request.id, "sa1")
    assert d.service.get_key("cards").version(10001).state.value == "destroyed"


def test_raising_the_minimum_decryption_version_needs_approval(people):
    d = people
    d.service.rotate("cards")
    request = d.access.approvals.submit("keys.min_decryption_version",
                                        {"key": "cards", "version": 10002}, p(d, "ka0"))
    assert approve(d, request.id, "ka1").status == "executed"
    assert d.service.get_key("cards").min_decryption_version == 10002


def test_role_grants_need_a_second_system_admin(people):
    d = people
    make_user(d, "newbie")
    request = d.access.approvals.submit("roles.grant", {"user": "newbie", "role": "auditor"},
                                        p(d, "sys0"))
    assert d.access.users.get("newbie").roles == frozenset()
    assert approve(d, request.id, "sys1").status == "executed"
    assert d.access.users.get("newbie").roles == frozenset({"auditor"})


@pytest.mark.parametrize("params", [{"user": "ghost", "role": "auditor"},
                                    {"user": "ka0", "role": "god"}, {}])
def test_bad_role_grants_are_refused_up_front(people, params):
    with pytest.raises((InvalidRequest, NotFound)):
        people.access.approvals.submit("roles.grant", params, p(people, "sys0"))


def test_a_failing_execution_is_recorded_as_failed(people):
    d = people
    request = d.access.approvals.submit("keys.rollback", {"key": "cards"}, p(d, "ka0"))
    done = approve(d, request.id, "ka1")  # only one version: nothing to roll back to
    assert done.status == "failed" and done.error

"""Conformance suites every HSM, algorithm and storage plugin runs unchanged.

Subclass a suite in your plugin's tests and provide its fixture::

    from kmsframe.testing.conformance import StorageConformance

    class TestMyStore(StorageConformance):
        @pytest.fixture
        def storage(self, tmp_path):
            store = MyStore(...)
            store.open()
            yield store
            store.close()

* :class:`HsmConformance` needs ``hsm``: an opened, initialised backend.
* :class:`AlgorithmConformance` needs ``algorithm``: the algorithm object.
* :class:`StorageConformance` needs ``storage``: an opened, *empty* store.

The suites import pytest, so import this module only from tests.
"""

from __future__ import annotations

import os
import pickle
import re
import threading
import pytest

from ..errors import (
    AlreadyExists,
    ConcurrentModification,
    Conflict,
    DecryptionFailed,
    IntegrityError,
    InvalidRequest,
    KmsError,
    NotFound,
    OperationNotAllowed,
)
from ..model import Operation, Purpose, WrappedKey
from ..providers import Algorithm, HsmBackend, KeyHandle, Storage, slow_operations
from ..secrets import KeyMaterial

STABLE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
AAD = b'{"alg":"aes-256-gcm","key":"k1","purpose":"encrypt","v":10001,"wrap":1}'


# ---------------------------------------------------------------------------
# HSM backends
# ---------------------------------------------------------------------------


class HsmConformance:
    """What every HSM backend must do."""

    @pytest.fixture
    def hsm(self) -> HsmBackend:  # pragma: no cover - provided by the subclass
        raise NotImplementedError("provide an 'hsm' fixture: an opened, initialised backend")

    def test_is_an_hsm_backend(self, hsm: HsmBackend) -> None:
        assert isinstance(hsm, HsmBackend)
        assert STABLE_ID.match(hsm.id)

    def test_status_is_ready_and_names_master_key(self, hsm: HsmBackend) -> None:
        status = hsm.status()
        assert status.ready and not status.sealed
        assert status.backend == hsm.id
        assert status.master_key_id

    def test_wrap_then_unwrap_returns_the_material(self, hsm: HsmBackend) -> None:
        material = KeyMaterial(os.urandom(32))
        wrapped = hsm.wrap(material, AAD)
        assert isinstance(wrapped, WrappedKey)
        assert wrapped.hsm == hsm.id
        assert hsm.unwrap(wrapped, AAD) == material

    def test_wrapped_blob_does_not_contain_the_material(self, hsm: HsmBackend) -> None:
        raw = os.urandom(32)
        wrapped = hsm.wrap(KeyMaterial(raw), AAD)
        assert raw not in wrapped.blob
        assert raw.hex() not in repr(wrapped)

    def test_wrapping_twice_gives_different_blobs(self, hsm: HsmBackend) -> None:
        material = KeyMaterial(os.urandom(32))
        assert hsm.wrap(material, AAD).blob != hsm.wrap(material, AAD).blob

    def test_unwrap_with_other_associated_data_fails(self, hsm: HsmBackend) -> None:
        wrapped = hsm.wrap(KeyMaterial(os.urandom(32)), AAD)
        with pytest.raises(IntegrityError):
            hsm.unwrap(wrapped, AAD.replace(b"10001", b"10002"))

    @pytest.mark.parametrize("position", [0, 5, -1])
    def test_unwrap_of_tampered_blob_fails(self, hsm: HsmBackend, position: int) -> None:
        wrapped = hsm.wrap(KeyMaterial(os.urandom(32)), AAD)
        blob = bytearray(wrapped.blob)
        blob[position] ^= 0x01
        with pytest.raises(IntegrityError):
            hsm.unwrap(WrappedKey(wrapped.hsm, wrapped.master_key_id, bytes(blob)), AAD)

    def test_unwrap_of_truncated_blob_fails(self, hsm: HsmBackend) -> None:
        wrapped = hsm.wrap(KeyMaterial(os.urandom(32)), AAD)
        with pytest.raises(IntegrityError):
            hsm.unwrap(WrappedKey(wrapped.hsm, wrapped.master_key_id, wrapped.blob[:-4]), AAD)

    def test_unwrap_under_unknown_master_key_fails(self, hsm: HsmBackend) -> None:
        wrapped = hsm.wrap(KeyMaterial(os.urandom(32)), AAD)
        with pytest.raises(IntegrityError):
            hsm.unwrap(WrappedKey(wrapped.hsm, "no-such-master-key", wrapped.blob), AAD)

    def test_random_has_the_requested_length_and_varies(self, hsm: HsmBackend) -> None:
        samples = {hsm.random(32) for _ in range(8)}
        assert len(samples) == 8
        assert all(len(s) == 32 for s in samples)
        assert len(hsm.random(1)) == 1

    def test_new_master_key_wraps_and_old_blobs_still_unwrap(self, hsm: HsmBackend) -> None:
        material = KeyMaterial(os.urandom(32))
        old = hsm.wrap(material, AAD)
        new_id = hsm.generate_master_key()
        assert new_id != old.master_key_id
        assert hsm.status().master_key_id == new_id
        fresh = hsm.wrap(material, AAD)
        assert fresh.master_key_id == new_id
        assert hsm.unwrap(old, AAD) == material
        assert hsm.unwrap(fresh, AAD) == material

    def test_wrap_is_safe_from_many_threads(self, hsm: HsmBackend) -> None:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(25):
                    m = KeyMaterial(os.urandom(32))
                    assert hsm.unwrap(hsm.wrap(m, AAD), AAD) == m
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    def test_repr_reveals_no_secret(self, hsm: HsmBackend) -> None:
        text = repr(hsm) + repr(hsm.status())
        assert "PRIVATE" not in text and "secret=" not in text.lower()


# ---------------------------------------------------------------------------
# Algorithms
# ---------------------------------------------------------------------------


def _within_plaintext_bounds(algorithm: Algorithm, size: int) -> bool:
    """Whether ``size`` is inside the algorithm's optional plaintext bounds."""
    high = getattr(algorithm, "max_plaintext_size", None)
    return size >= getattr(algorithm, "min_plaintext_size", 0) and (high is None or size <= high)


class AlgorithmConformance:
    """What every algorithm must do, by the purposes it declares."""

    @pytest.fixture
    def algorithm(self) -> Algorithm:  # pragma: no cover - provided by the subclass
        raise NotImplementedError("provide an 'algorithm' fixture")

    @pytest.fixture
    def handle(self, algorithm: Algorithm) -> KeyHandle:
        return algorithm.load(algorithm.generate(os.urandom))

    def test_is_an_algorithm_with_a_stable_id(self, algorithm: Algorithm) -> None:
        assert isinstance(algorithm, Algorithm)
        assert STABLE_ID.match(algorithm.id), algorithm.id
        assert algorithm.purposes and algorithm.purposes <= set(Purpose)

    def test_declared_slow_operations_are_operations(self, algorithm: Algorithm) -> None:
        """``slow_operations``, when declared, names operations (transports read it
        to keep those calls off their event loop); a typo must not pass silently."""
        declared = getattr(algorithm, "slow_operations", None)
        if declared is not None:
            assert isinstance(declared, frozenset), type(declared)
            assert all(isinstance(op, Operation) for op in declared), declared
        assert slow_operations(algorithm) <= set(Operation)

    def test_generated_material_is_sealed_and_fresh(self, algorithm: Algorithm) -> None:
        a, b = algorithm.generate(os.urandom), algorithm.generate(os.urandom)
        assert isinstance(a, KeyMaterial)
        assert a != b
        assert a.reveal().hex() not in repr(a)
        with pytest.raises(TypeError):
            pickle.dumps(a)

    def test_handle_reveals_no_key(self, algorithm: Algorithm) -> None:
        material = algorithm.generate(os.urandom)
        handle = algorithm.load(material)
        assert material.reveal().hex() not in repr(handle)
        with pytest.raises(TypeError):
            pickle.dumps(handle)

    def test_handle_loaded_twice_from_the_same_material_agrees(self, algorithm: Algorithm) -> None:
        material = algorithm.generate(os.urandom)
        first, second = algorithm.load(material), algorithm.load(material)
        message = b"the same key, loaded twice"
        if Purpose.ENCRYPT in algorithm.purposes:
            assert second.decrypt(first.encrypt(message, b"aad"), b"aad") == message
        if Purpose.SIGN in algorithm.purposes:
            assert second.verify(message, first.sign(message, {}), {})
        if Purpose.MAC in algorithm.purposes:
            assert first.mac(message) == second.mac(message)

    # -- encryption ------------------------------------------------------------

    @pytest.fixture
    def encrypting(self, algorithm: Algorithm, handle: KeyHandle) -> KeyHandle:
        if Purpose.ENCRYPT not in algorithm.purposes:
            pytest.skip(f"{algorithm.id} does not encrypt")
        return handle

    @pytest.mark.parametrize("size", [0, 1, 16, 64, 1000])
    def test_encrypt_then_decrypt_round_trips(self, algorithm: Algorithm, encrypting: KeyHandle,
                                              size: int) -> None:
        plaintext = os.urandom(size)
        if not _within_plaintext_bounds(algorithm, size):
            # Public-key encryption is bounded; outside its declared bounds it
            # must refuse with a request error, not fail some other way.
            with pytest.raises(InvalidRequest):
                encrypting.encrypt(plaintext, b"aad")
            return
        body = encrypting.encrypt(plaintext, b"aad")
        assert encrypting.decrypt(body, b"aad") == plaintext

    def test_declared_plaintext_bounds_round_trip(self, algorithm: Algorithm,
                                                  encrypting: KeyHandle) -> None:
        low = getattr(algorithm, "min_plaintext_size", 0)
        high = getattr(algorithm, "max_plaintext_size", None)
        for size in (low, high):
            if size is not None:
                plaintext = os.urandom(size)
                assert encrypting.decrypt(encrypting.encrypt(plaintext, b"aad"), b"aad") == plaintext
        if high is not None:
            with pytest.raises(InvalidRequest):
                encrypting.encrypt(os.urandom(high + 1), b"aad")

    def test_encryption_is_randomised(self, encrypting: KeyHandle) -> None:
        assert encrypting.encrypt(b"same", b"") != encrypting.encrypt(b"same", b"")

    def test_decrypt_with_other_aad_fails(self, algorithm: Algorithm, encrypting: KeyHandle) -> None:
        body = encrypting.encrypt(b"secret", b"aad-1")
        try:
            opened = encrypting.decrypt(body, b"aad-2")
        except DecryptionFailed:
            return
        # Only algorithms without associated data may ignore it, and must say so.
        assert getattr(algorithm, "binds_aad", True) is False, "AAD was not bound"
        assert opened == b"secret"

    def test_decrypt_of_any_tampered_byte_fails(self, encrypting: KeyHandle) -> None:
        body = encrypting.encrypt(b"payment card 4111111111111111", b"aad")
        for i in range(len(body)):
            tampered = bytearray(body)
            tampered[i] ^= 0x80
            with pytest.raises(DecryptionFailed):
                encrypting.decrypt(bytes(tampered), b"aad")

    @pytest.mark.parametrize("body", [b"", b"\x00", b"\x00" * 16, b"\xff" * 100])
    def test_decrypt_of_garbage_fails_cleanly(self, encrypting: KeyHandle, body: bytes) -> None:
        with pytest.raises(DecryptionFailed):
            encrypting.decrypt(body, b"aad")

    def test_decrypt_under_another_key_fails(self, algorithm: Algorithm, encrypting: KeyHandle) -> None:
        other = algorithm.load(algorithm.generate(os.urandom))
        with pytest.raises(DecryptionFailed):
            other.decrypt(encrypting.encrypt(b"secret", b"aad"), b"aad")

    # -- signatures --------------------------------------------------------------

    @pytest.fixture
    def signing(self, algorithm: Algorithm, handle: KeyHandle) -> KeyHandle:
        if Purpose.SIGN not in algorithm.purposes:
            pytest.skip(f"{algorithm.id} does not sign")
        return handle

    def test_sign_then_verify(self, signing: KeyHandle) -> None:
        signature = signing.sign(b"transfer 100.00 CNY", {})
        assert signing.verify(b"transfer 100.00 CNY", signature, {}) is True

    def test_verify_rejects_another_message(self, signing: KeyHandle) -> None:
        signature = signing.sign(b"transfer 100.00 CNY", {})
        assert signing.verify(b"transfer 900.00 CNY", signature, {}) is False

    def test_verify_rejects_tampered_and_garbage_signatures(self, signing: KeyHandle) -> None:
        signature = bytearray(signing.sign(b"message", {}))
        signature[len(signature) // 2] ^= 0x01
        assert signing.verify(b"message", bytes(signature), {}) is False
        for garbage in (b"", b"\x00", os.urandom(64), os.urandom(600)):
            assert signing.verify(b"message", garbage, {}) is False

    def test_verify_with_another_key_fails(self, algorithm: Algorithm, signing: KeyHandle) -> None:
        other = algorithm.load(algorithm.generate(os.urandom))
        assert other.verify(b"message", signing.sign(b"message", {}), {}) is False

    def test_signing_key_has_a_public_key(self, signing: KeyHandle) -> None:
        pem = signing.public_key_pem()
        assert pem is not None and pem.startswith("-----BEGIN PUBLIC KEY-----")
        assert "PRIVATE" not in pem

    # -- MACs ----------------------------------------------------------------------

    @pytest.fixture
    def macing(self, algorithm: Algorithm, handle: KeyHandle) -> KeyHandle:
        if Purpose.MAC not in algorithm.purposes:
            pytest.skip(f"{algorithm.id} does not compute MACs")
        return handle

    def test_mac_is_deterministic_and_verifies(self, macing: KeyHandle) -> None:
        tag = macing.mac(b"message")
        assert tag == macing.mac(b"message")
        assert macing.verify(b"message", tag, {}) is True

    def test_mac_rejects_other_message_and_tampered_tag(self, macing: KeyHandle) -> None:
        tag = bytearray(macing.mac(b"message"))
        assert macing.verify(b"messagE", bytes(tag), {}) is False
        tag[0] ^= 1
        assert macing.verify(b"message", bytes(tag), {}) is False
        assert macing.verify(b"message", b"", {}) is False

    # -- purposes are enforced -------------------------------------------------------

    def test_operations_outside_the_purpose_are_refused(self, algorithm: Algorithm,
                                                        handle: KeyHandle) -> None:
        if Purpose.ENCRYPT not in algorithm.purposes:
            with pytest.raises(OperationNotAllowed):
                handle.encrypt(b"x", b"")
        if Purpose.SIGN not in algorithm.purposes:
            with pytest.raises(OperationNotAllowed):
                handle.sign(b"x", {})
        if Purpose.MAC not in algorithm.purposes:
            with pytest.raises(OperationNotAllowed):
                handle.mac(b"x")


# ---------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------


class StorageConformance:
    """What every key store must do. The ``storage`` fixture starts empty."""

    @pytest.fixture
    def storage(self) -> Storage:  # pragma: no cover - provided by the subclass
        raise NotImplementedError("provide a 'storage' fixture: an opened, empty store")

    def test_is_a_storage(self, storage: Storage) -> None:
        assert isinstance(storage, Storage)
        assert STABLE_ID.match(storage.id)
        storage.ping()

    def test_missing_document_is_none(self, storage: Storage) -> None:
        assert storage.get("key", "nope") is None

    def test_create_then_read(self, storage: Storage) -> None:
        data = {"name": "k", "nested": {"list": [1, 2.5, None, True]}, "text": "密钥 ✓"}
        assert storage.put("key", "k", data, expected_revision=0) == 1
        doc = storage.get("key", "k")
        assert doc is not None
        assert (doc.kind, doc.id, doc.revision) == ("key", "k", 1)
        assert dict(doc.data) == data

    def test_create_twice_is_refused_and_keeps_the_first(self, storage: Storage) -> None:
        storage.put("key", "k", {"v": 1}, expected_revision=0)
        with pytest.raises(AlreadyExists):
            storage.put("key", "k", {"v": 2}, expected_revision=0)
        assert storage.get("key", "k").data == {"v": 1}  # type: ignore[union-attr]

    def test_update_at_the_right_revision(self, storage: Storage) -> None:
        storage.put("key", "k", {"v": 1}, expected_revision=0)
        assert storage.put("key", "k", {"v": 2}, expected_revision=1) == 2
        assert storage.get("key", "k").data == {"v": 2}  # type: ignore[union-attr]

    def test_stale_update_is_refused_and_changes_nothing(self, storage: Storage) -> None:
        storage.put("key", "k", {"v": 1}, expected_revision=0)
        storage.put("key", "k", {"v": 2}, expected_revision=1)
        with pytest.raises(ConcurrentModification):
            storage.put("key", "k", {"v": 3}, expected_revision=1)
        doc = storage.get("key", "k")
        assert doc is not None and doc.revision == 2 and doc.data == {"v": 2}

    def test_update_of_missing_document_is_not_found(self, storage: Storage) -> None:
        with pytest.raises(NotFound):
            storage.put("key", "ghost", {"v": 1}, expected_revision=3)

    def test_delete_needs_the_current_revision(self, storage: Storage) -> None:
        storage.put("key", "k", {"v": 1}, expected_revision=0)
        with pytest.raises(Conflict):
            storage.delete("key", "k", expected_revision=7)
        storage.delete("key", "k", expected_revision=1)
        assert storage.get("key", "k") is None
        with pytest.raises(NotFound):
            storage.delete("key", "k", expected_revision=1)

    def test_kinds_are_separate_and_listed_in_id_order(self, storage: Storage) -> None:
        for name in ("b", "a", "c"):
            storage.put("key", name, {"n": name}, expected_revision=0)
        storage.put("app", "a", {"app": True}, expected_revision=0)
        assert [d.id for d in storage.list("key")] == ["a", "b", "c"]
        assert [d.data for d in storage.list("app")] == [{"app": True}]
        assert storage.list("user") == []

    def test_change_counter_grows_with_every_write(self, storage: Storage) -> None:
        before = storage.change_counter()
        storage.put("key", "k", {"v": 1}, expected_revision=0)
        after_create = storage.change_counter()
        storage.put("key", "k", {"v": 2}, expected_revision=1)
        after_update = storage.change_counter()
        storage.delete("key", "k", expected_revision=2)
        assert before < after_create < after_update < storage.change_counter()

    def test_failed_write_does_not_count_as_a_change(self, storage: Storage) -> None:
        storage.put("key", "k", {"v": 1}, expected_revision=0)
        before = storage.change_counter()
        with pytest.raises(ConcurrentModification):
            storage.put("key", "k", {"v": 2}, expected_revision=9)
        assert storage.change_counter() == before

    def test_log_appends_are_numbered_without_gaps(self, storage: Storage) -> None:
        seqs = [storage.append("audit", {"i": i}) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert storage.append("other", {"x": 1}) == 1
        entries = storage.read_log("audit")
        assert [(s, dict(e)) for s, e in entries] == [(i + 1, {"i": i}) for i in range(5)]
        assert [s for s, _ in storage.read_log("audit", after=2, limit=2)] == [3, 4]

    def test_concurrent_writers_never_lose_an_update(self, storage: Storage) -> None:
        storage.put("counter", "c", {"n": 0}, expected_revision=0)
        errors: list[BaseException] = []

        def increment(times: int) -> None:
            try:
                for _ in range(times):
                    while True:
                        doc = storage.get("counter", "c")
                        assert doc is not None
                        try:
                            storage.put("counter", "c", {"n": doc.data["n"] + 1}, doc.revision)
                            break
                        except ConcurrentModification:
                            continue
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=increment, args=(15,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert storage.get("counter", "c").data == {"n": 60}  # type: ignore[union-attr]

    def test_concurrent_appends_have_unique_sequence_numbers(self, storage: Storage) -> None:
        results: list[int] = []
        lock = threading.Lock()

        def append(n: int) -> None:
            for i in range(n):
                seq = storage.append("audit", {"i": i})
                with lock:
                    results.append(seq)

        threads = [threading.Thread(target=append, args=(20,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == list(range(1, 81))

    def test_errors_are_kms_errors(self, storage: Storage) -> None:
        storage.put("key", "k", {}, expected_revision=0)
        with pytest.raises(KmsError):
            storage.put("key", "k", {}, expected_revision=0)

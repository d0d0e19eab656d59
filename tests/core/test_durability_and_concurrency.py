"""State survives restarts; rotation races encryption; workers see changes at once;
nothing secret reaches the disk."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from pathlib import Path

import pytest

from kmsframe.errors import DecryptionFailed
from kmsframe.testing import embedded_deployment


def test_state_survives_a_restart(tmp_path: Path) -> None:
    with embedded_deployment(tmp_path) as d:
        d.service.create_key("k")
        first = d.service.encrypt("k", b"before restart").ciphertext
        d.service.rotate("k", reason="r")
        d.service.disable("k")
    with embedded_deployment(tmp_path) as d:
        key = d.service.get_key("k")
        assert key.primary_version == 10002 and key.status.value == "disabled"
        d.service.enable("k")
        assert d.service.decrypt("k", first) == b"before restart"
        assert d.service.encrypt("k", b"x").version == 10002


def test_rotating_while_threads_encrypt_never_yields_an_undecryptable_ciphertext(
        tmp_path: Path) -> None:
    with embedded_deployment(tmp_path) as d:
        service = d.service
        service.create_key("k")
        made: list[tuple[bytes, str]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def encrypt(worker: int) -> None:
            i = 0
            try:
                while not stop.is_set():
                    plaintext = f"{worker}-{i}".encode()
                    made.append((plaintext, service.encrypt("k", plaintext).ciphertext))
                    i += 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=encrypt, args=(w,)) for w in range(3)]
        # Short GIL slices: the rotating thread waits on SQLite I/O many times.
        old_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        for t in threads:
            t.start()
        for _ in range(10):
            service.rotate("k")
            time.sleep(0.005)  # let the encrypting threads run between rotations
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(old_interval)
        assert not errors, errors
        versions = {text[:5] for _, text in made}
        assert len(versions) > 5, "rotation should have happened while encrypting"
        for plaintext, text in made:
            assert service.decrypt("k", text) == plaintext


def _worker(data_dir: str, ready, go, results) -> None:  # runs in a child process
    import logging

    logging.disable(logging.WARNING)
    with embedded_deployment(Path(data_dir)) as d:
        d.service.encrypt("k", b"warm the cache")
        ready.set()
        go.wait(30)
        results.put(d.service.encrypt("k", b"after").version)
        results.put(d.service.get_key("k").status.value)
        try:
            d.service.encrypt("k2", b"x")
            results.put("encrypted")
        except Exception as exc:  # noqa: BLE001 - the code is the result
            results.put(getattr(exc, "code", repr(exc)))


def test_another_worker_process_sees_a_change_as_soon_as_it_returns(tmp_path: Path) -> None:
    with embedded_deployment(tmp_path) as d:
        d.service.create_key("k")
        d.service.create_key("k2")
        ctx = multiprocessing.get_context("spawn")
        ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
        child = ctx.Process(target=_worker, args=(str(tmp_path), ready, go, results))
        child.start()
        assert ready.wait(60)
        # The child has key k cached at 10001; change things here, then let it go.
        d.service.rotate("k")
        d.service.disable("k2")
        go.set()
        got = [results.get(timeout=60) for _ in range(3)]
        child.join(30)
    assert got == [10002, "enabled", "key_disabled"]


def test_no_key_material_reaches_the_disk(tmp_path: Path) -> None:
    with embedded_deployment(tmp_path) as d:
        d.service.create_key("k")
        d.service.rotate("k")
        key = d.service.get_key("k")
        from kmsframe.ciphertext import wrap_aad

        raw = [d.hsm.unwrap(v.wrapped, wrap_aad(key.id, v.number, key.algorithm, "encrypt")).reveal()
               for v in key.versions if v.wrapped is not None]
        dk = d.service.generate_data_key("k")
        raw.append(dk.plaintext.reveal())  # type: ignore[union-attr]
        mk = [m for m in d.hsm._master_keys.values()]  # noqa: SLF001 - white-box
        assert mk
    blobs = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in raw:
        assert secret not in blobs
        assert secret.hex().encode() not in blobs
        import base64

        assert base64.b64encode(secret) not in blobs


def test_logs_never_show_key_material(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG"), embedded_deployment(tmp_path) as d:
        d.service.create_key("k")
        dk = d.service.generate_data_key("k")
        with pytest.raises(DecryptionFailed):
            d.service.decrypt("k", dk.ciphertext[:-6] + "AAAAA=")
    text = caplog.text + repr(dk)
    assert dk.plaintext.reveal().hex() not in text  # type: ignore[union-attr]
    assert "**********" in repr(dk.plaintext)

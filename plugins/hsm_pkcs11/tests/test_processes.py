"""Several processes on the same token, as several uvicorn workers are: each
opens its own deployment, so each loads and logs in to the library itself."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from click.testing import CliRunner
from kmsframe_hsm_pkcs11 import build
from kmsframe_hsm_pkcs11.testing import deployment_toml

from kmsframe.cli import main
from kmsframe.config import DeploymentConfig
from kmsframe.deployment import Deployment
from kmsframe.secrets import KeyMaterial, Secret

AAD = b"process-aad"


def _worker(toml: str, texts: list[str], rounds: int, queue) -> None:
    """A worker process: open the deployment, decrypt and encrypt."""
    try:
        with Deployment.open(DeploymentConfig.load(toml)) as d:
            for i in range(rounds):
                d.service.cache.invalidate()  # force an HSM unwrap every time
                for n, text in enumerate(texts):
                    assert d.service.decrypt("shared", text) == b"text %d" % n
                own = d.service.encrypt("shared", b"pid %d" % os.getpid()).ciphertext
                assert d.service.decrypt("shared", own) == b"pid %d" % os.getpid()
            queue.put(("ok", os.getpid(), d.hsm.status().ready))
    except BaseException as exc:  # noqa: BLE001 - sent to the parent to fail the test
        queue.put(("error", os.getpid(), repr(exc)))


def test_spawned_workers_share_the_token(make_realm, key_label, tmp_path: Path) -> None:
    realm = make_realm("kms-a")
    toml = deployment_toml(tmp_path, [(realm, "kms-a")], key_label)
    assert CliRunner().invoke(main, ["--config", str(toml), "init"]).exit_code == 0
    with Deployment.open(DeploymentConfig.load(toml)) as d:
        d.service.create_key("shared")
        texts = [d.service.encrypt("shared", b"text %d" % n).ciphertext for n in range(5)]
    ctx = multiprocessing.get_context("spawn")  # what uvicorn's worker supervisor uses
    queue = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(str(toml), texts, 50, queue)) for _ in range(3)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert [r[0] for r in results] == ["ok"] * 3, results
    assert len({r[1] for r in results}) == 3 and all(r[2] for r in results)


def test_forked_child_initialises_its_own_library(shared_realm, key_label) -> None:
    parent = build(shared_realm.settings("kms-a", key_label=key_label))
    parent.open()
    parent.initialize()
    wrapped = parent.wrap(KeyMaterial(b"f" * 32), AAD)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        try:
            backend = build(shared_realm.settings("kms-a", key_label=key_label))
            backend.open()
            ok = backend.unwrap(wrapped, AAD) == KeyMaterial(b"f" * 32)
            again = backend.wrap(KeyMaterial(b"g" * 32), AAD)
            backend.close()
            queue.put(("ok", ok, again.blob))
        except BaseException as exc:  # noqa: BLE001
            queue.put(("error", repr(exc), b""))

    process = ctx.Process(target=child)
    process.start()
    status, ok, blob = queue.get(timeout=60)
    process.join(timeout=30)
    assert (status, ok) == ("ok", True), ok
    # The parent's session survived the child's C_Initialize/C_Finalize, and
    # what the child wrapped opens here.
    assert parent.unwrap(wrapped, AAD) == KeyMaterial(b"f" * 32)
    assert parent.unwrap(type(wrapped)("pkcs11", wrapped.master_key_id, blob), AAD) == \
        KeyMaterial(b"g" * 32)
    parent.close()


def _rotate_in_other_process(settings: dict, pin_file: str, queue) -> None:
    try:
        # Secrets refuse to be pickled, so the PIN is read again here, as a
        # process reading its configuration would.
        pin = Secret(Path(pin_file).read_bytes().strip())
        backend = build({**settings, "pin": pin})
        backend.open()
        new_id = backend.generate_master_key()
        blob = backend.wrap(KeyMaterial(b"o" * 32), AAD).blob
        backend.close()
        queue.put(("ok", new_id, blob))
    except BaseException as exc:  # noqa: BLE001
        queue.put(("error", repr(exc), b""))


def test_master_key_rotated_by_another_process_is_seen(make_realm, key_label) -> None:
    realm = make_realm("kms-a")
    settings = realm.settings("kms-a", key_label=key_label)
    serving = build(settings)  # a long-running worker
    serving.open()
    first = serving.initialize()["master_key_id"]
    old = serving.wrap(KeyMaterial(b"w" * 32), AAD)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    plain = {k: v for k, v in settings.items() if k != "pin"}
    process = ctx.Process(target=_rotate_in_other_process,
                          args=(plain, str(realm.pin_file), queue))
    process.start()  # the ceremony runs in another process (the CLI)
    status, new_id, blob = queue.get(timeout=60)
    process.join(timeout=30)
    assert status == "ok" and new_id != first, new_id
    # The worker wraps under the new key at once and opens what the other process wrapped.
    assert serving.wrap(KeyMaterial(b"x" * 32), AAD).master_key_id == new_id
    assert serving.unwrap(type(old)("pkcs11", new_id, blob), AAD) == KeyMaterial(b"o" * 32)
    assert serving.unwrap(old, AAD) == KeyMaterial(b"w" * 32)
    assert serving.status().master_key_id == new_id
    serving.close()


def test_a_token_that_appears_after_the_library_started_is_found_at_startup(
        softhsm_root: Path, key_label: str) -> None:
    """SoftHSM2 scans its token directory only in C_Initialize; a worker that
    initialised while another process was still writing the token's files must
    initialise again rather than retry against a slot list that cannot change."""
    import threading

    from kmsframe_hsm_pkcs11.testing import Realm

    realm = Realm(softhsm_root / "late", [])
    hsm = build(realm.settings("kms-late", key_label=key_label))
    # The token is made while the backend's first attempt has already failed.
    maker = threading.Timer(0.05, realm.init_token, args=("kms-late",))
    maker.start()
    try:
        hsm.open()
        hsm.initialize()
        assert hsm.status().tokens[0]["up"] is True
        wrapped = hsm.wrap(KeyMaterial(b"l" * 32), AAD)
        assert hsm.unwrap(wrapped, AAD).reveal() == b"l" * 32
    finally:
        maker.join()
        hsm.close()

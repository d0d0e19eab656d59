"""Deployments are assembled from config; only named plugins load; errors name the culprit."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import kmsframe
from kmsframe.config import DeploymentConfig, resolve_secrets
from kmsframe.deployment import Deployment
from kmsframe.errors import ConfigurationError, PluginError
from kmsframe.plugins import PluginHost, installed_plugins
from kmsframe.secrets import Secret


def test_built_in_plugins_are_installed_as_entry_points() -> None:
    names = {p.name for p in installed_plugins()}
    assert {"hsm_soft", "algo_aes", "storage_sql"} <= names


def test_only_named_plugins_load() -> None:
    host = PluginHost()
    host.load_entry_points(["algo_aes"])
    assert host.active == ["algo_aes"]
    assert host.offered()["hsm"] == [] and host.offered()["algorithms"] == ["aes-256-gcm"]


def test_missing_plugin_stops_startup_naming_it() -> None:
    with pytest.raises(PluginError, match="'hsm_imaginary'.*not installed"):
        PluginHost().load_entry_points(["algo_aes", "hsm_imaginary"])


def test_unknown_backend_names_what_is_offered(tmp_path: Path) -> None:
    config = DeploymentConfig.from_mapping({
        "deployment": {"data_dir": str(tmp_path), "plugins": ["algo_aes", "storage_sql"]},
        "hsm": {"backend": "soft"},
        "storage": {"backend": "sql", "url": f"sqlite:///{tmp_path}/k.db"},
    })
    with pytest.raises(PluginError, match="HSM backend 'soft' is not offered.*offered: none"):
        Deployment.open(config)


def test_misconfigured_plugin_is_named(tmp_path: Path) -> None:
    config = DeploymentConfig.from_mapping({
        "deployment": {"data_dir": str(tmp_path)},
        "hsm": {"backend": "soft", "keystore": str(tmp_path / "ks.json")},
        "storage": {"backend": "sql", "url": "mysql://nope/db"},
    })
    with pytest.raises(ConfigurationError, match="storage: only sqlite and postgresql"):
        Deployment.open(config)


def test_misspelled_hook_fails_loudly() -> None:
    plugin = types.SimpleNamespace()

    @kmsframe.hookimpl
    def kms_register_algorithm(register):  # missing "s"
        pass

    plugin.kms_register_algorithm = kms_register_algorithm
    with pytest.raises(PluginError, match="kms_register_algorithm"):
        PluginHost().register(plugin, "typo")


def test_duplicate_algorithm_id_names_both_plugins() -> None:
    class One:
        @kmsframe.hookimpl
        def kms_register_algorithms(self, register):
            register(types.SimpleNamespace(id="aes-256-gcm"))

    host = PluginHost()
    host.load_entry_points(["algo_aes"])
    host.register(One(), "copycat")
    with pytest.raises(PluginError, match="'aes-256-gcm' is registered by both"):
        host.algorithms()


def test_secret_references_resolve_and_stay_redacted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KMS_TEST_PIN", "1234")
    (tmp_path / "pw").write_text("from-file\n")
    resolved = resolve_secrets({"pin": "$env:KMS_TEST_PIN", "pw": f"$file:{tmp_path}/pw",
                                "plain": "x", "dollar": "$$literal", "list": ["$env:KMS_TEST_PIN"]})
    assert isinstance(resolved["pin"], Secret) and resolved["pin"].reveal() == b"1234"
    assert resolved["pw"].reveal() == b"from-file"
    assert resolved["plain"] == "x" and resolved["dollar"] == "$literal"
    assert "1234" not in repr(resolved) and "from-file" not in str(resolved)


def test_missing_secret_reference_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="hsm.pin: environment variable NOPE_X"):
        resolve_secrets({"pin": "$env:NOPE_X"}, where="hsm")
    with pytest.raises(ConfigurationError, match="cannot read secret file"):
        resolve_secrets(f"$file:{tmp_path}/absent")


def test_toml_file_loads_and_bad_toml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "kms.toml"
    path.write_text('[deployment]\ndata_dir = "d"\n[hsm]\nbackend = "soft"\n'
                    '[storage]\nbackend = "sql"\nurl = "sqlite:///x.db"\n')
    config = DeploymentConfig.load(path)
    assert config.data_dir == (tmp_path / "d").resolve()
    path.write_text("[deployment\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        DeploymentConfig.load(path)
    with pytest.raises(ConfigurationError, match="needs a 'backend'"):
        DeploymentConfig.from_mapping({"hsm": {}, "storage": {"backend": "sql"}})


def test_unknown_key_settings_are_refused(tmp_path: Path) -> None:
    from kmsframe.deployment import service_settings

    assert service_settings({"deletion_wait_days": 7}).deletion_wait_days == 7
    with pytest.raises(ConfigurationError, match="cache_sise"):
        service_settings({"cache_sise": 3})


def test_relative_plugin_paths_are_relative_to_the_data_directory(tmp_path: Path, monkeypatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "unseal").write_text("passphrase")
    path = tmp_path / "conf" / "kms.toml"
    path.write_text(
        '[deployment]\ndata_dir = "state"\n'
        f'[hsm]\nbackend = "soft"\nkeystore = "ks.json"\nunseal_secret = "$file:{tmp_path}/conf/unseal"\n'
        'scrypt_n = 1024\n'
        '[storage]\nbackend = "sql"\nurl = "sqlite:///kms.db"\n')
    config = DeploymentConfig.load(path)
    host = PluginHost()
    host.load_entry_points(config.plugins)
    host.build_hsm(config.hsm).initialize()
    with Deployment.open(config, plugins=host) as d:
        d.service.create_key("k")
    state = tmp_path / "conf" / "state"
    assert (state / "ks.json").exists() and (state / "kms.db").exists()
    assert list(elsewhere.iterdir()) == []

"""Assemble a deployment from its configuration: plugins, HSM, store, service.

Nothing happens at import time. ``Deployment.open(config)`` loads the named
plugins, builds and opens the HSM and storage backends, and returns a ready
deployment; ``close()`` releases them. Tests build their own deployments.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from .access.builtin import register_builtin_plugins
from .access.control import AccessControl
from .changes import LocalChangeSignal, SharedFileChangeSignal
from .node_sync import StoreSyncedSignal
from .config import DeploymentConfig
from .errors import ConfigurationError, KmsError
from .keystore import KeyRepository
from .plugins import PluginHost
from .providers import HsmBackend, Storage
from .service import KeyService, ServiceSettings

log = logging.getLogger(__name__)


def service_settings(raw: Mapping[str, Any]) -> ServiceSettings:
    """``[keys]`` table → :class:`ServiceSettings` (unknown names are errors)."""
    known = {f.name for f in attrs.fields(ServiceSettings)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigurationError(f"[keys] has unknown settings: {', '.join(sorted(unknown))}")
    try:
        return ServiceSettings(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"[keys] is invalid: {exc}") from None


class Deployment:
    """A running set of plugins and the key service built on them."""

    def __init__(self, config: DeploymentConfig, plugins: PluginHost, hsm: HsmBackend,
                 storage: Storage, service: KeyService, access: AccessControl) -> None:
        self.config = config
        self.plugins = plugins
        self.hsm = hsm
        self.storage = storage
        self.service = service
        self.access = access
        access.attach(self)

    @classmethod
    def open(cls, config: DeploymentConfig, *, plugins: PluginHost | None = None,
             shared_signal: bool = True) -> "Deployment":
        if plugins is None:
            plugins = PluginHost()
            plugins.load_entry_points(config.plugins)
        register_builtin_plugins(plugins)
        storage = plugins.build_storage(config.storage)
        hsm = plugins.build_hsm(config.hsm)
        settings = service_settings(config.keys)
        opened: list[Any] = []
        try:
            storage.open()
            opened.append(storage)
            hsm.open()
            opened.append(hsm)
        except KmsError:
            for thing in reversed(opened):
                thing.close()
            raise
        signal = StoreSyncedSignal(
            SharedFileChangeSignal(config.data_dir / "changes.counter")
            if shared_signal else LocalChangeSignal(), storage)
        service = KeyService(plugins=plugins, hsm=hsm, repository=KeyRepository(storage),
                             signal=signal, settings=settings)
        try:
            access = AccessControl.open(config, plugins, hsm, storage, service)
        except BaseException:
            for thing in reversed(opened):
                thing.close()
            raise
        return cls(config, plugins, hsm, storage, service, access)

    def close(self) -> None:
        # The audit log first: its closing seal needs the HSM and the store.
        for closer in (self.access.close, self.hsm.close, self.storage.close,
                       self.service.signal.close):
            try:
                closer()
            except Exception:
                log.exception("error while closing the deployment")

    def __enter__(self) -> "Deployment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A typed facade over pluggy: load the named plugins, collect their providers.

There is no global plugin manager. :class:`PluginHost` is built when a
deployment is assembled, loads only the ``kmsframe`` entry points the
configuration names, checks every hook implementation against
:mod:`kmsframe.hookspecs`, and offers typed methods so the rest of the core
never calls ``pm.hook.x(**kw)`` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .authorization import AuthorizationRequest, Denial
from .errors import PluginError
from .model import Key, KeyStatus, VersionState
from .providers import Algorithm, AuditSink, HsmBackend, Storage, Transport

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "kmsframe"


@attrs.frozen(slots=True)
class InstalledPlugin:
    name: str
    distribution: str
    version: str
    value: str


def installed_plugins() -> list[InstalledPlugin]:
    """Every plugin installed in this environment, loaded or not."""
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        found.append(
            InstalledPlugin(
                name=ep.name,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
                value=ep.value,
            )
        )
    return sorted(found, key=lambda p: p.name)


class PluginHost:
    """The deployment's plugins and the providers they registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.active: list[str] = []
        self.builtins: set[str] = set()
        self._algorithms: dict[str, Algorithm] = {}
        self._hsm_factories: dict[str, Callable[..., HsmBackend]] = {}
        self._storage_factories: dict[str, Callable[..., Storage]] = {}
        self._audit_factories: dict[str, Callable[..., AuditSink]] = {}
        self._transport_factories: dict[str, Callable[..., Transport]] = {}
        self._approval_executors: dict[str, Any] = {}
        self._collected = False

    # -- loading -------------------------------------------------------------

    def load_entry_points(self, names: Iterable[str]) -> None:
        """Load exactly the named entry points; a missing name stops startup."""
        available = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        for name in names:
            ep = available.get(name)
            if ep is None:
                known = ", ".join(sorted(available)) or "none"
                raise PluginError(
                    f"plugin {name!r} is named in the configuration but not installed "
                    f"(installed: {known})"
                )
            try:
                plugin = ep.load()
            except Exception as exc:  # import errors of third-party code
                raise PluginError(f"plugin {name!r} failed to import: {exc}") from exc
            self.register(plugin, name)

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object (a module or an instance) under ``name``."""
        if self.pm.get_plugin(name) is not None:
            raise PluginError(f"plugin {name!r} is registered twice")
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
        self.active.append(name)
        self._collected = False

    # -- registries ----------------------------------------------------------

    def _collect(self) -> None:
        if self._collected:
            return
        self._algorithms.clear()
        owners: dict[tuple[str, str], str] = {}

        def registrar(kind: str, target: dict[str, Any], plugin_name: str) -> Callable[..., None]:
            def register(id_or_obj: Any, factory: Any = None) -> None:
                if factory is None:  # algorithms register the object itself
                    ident, value = id_or_obj.id, id_or_obj
                else:
                    ident, value = id_or_obj, factory
                if not isinstance(ident, str) or not ident:
                    raise PluginError(f"plugin {plugin_name!r} registered a {kind} without an id")
                if ident in target:
                    raise PluginError(
                        f"{kind} {ident!r} is registered by both "
                        f"{owners[(kind, ident)]!r} and {plugin_name!r}"
                    )
                owners[(kind, ident)] = plugin_name
                target[ident] = value

            return register

        for kind, hook, target in (
            ("algorithm", "kms_register_algorithms", self._algorithms),
            ("HSM backend", "kms_register_hsm_backends", self._hsm_factories),
            ("storage backend", "kms_register_storage_backends", self._storage_factories),
            ("audit sink", "kms_register_audit_sinks", self._audit_factories),
            ("transport", "kms_register_transports", self._transport_factories),
            ("approval executor", "kms_register_approval_executors", self._approval_executors),
        ):
            target.clear()
            caller = getattr(self.pm.hook, hook)
            for impl in caller.get_hookimpls():
                try:
                    impl.function(register=registrar(kind, target, impl.plugin_name))
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} failed while registering: {exc}"
                    ) from exc
        self._collected = True

    def algorithms(self) -> Mapping[str, Algorithm]:
        self._collect()
        return dict(self._algorithms)

    def algorithm(self, algorithm_id: str) -> Algorithm:
        self._collect()
        try:
            return self._algorithms[algorithm_id]
        except KeyError:
            from .errors import UnsupportedAlgorithm

            raise UnsupportedAlgorithm(
                f"algorithm {algorithm_id!r} is not available in this deployment"
            ) from None

    def _build(self, kind: str, factories: Mapping[str, Callable[..., Any]], settings: Mapping[str, Any]) -> Any:
        backend = settings.get("backend")
        factory = factories.get(backend) if isinstance(backend, str) else None
        if factory is None:
            known = ", ".join(sorted(factories)) or "none"
            raise PluginError(
                f"{kind} backend {backend!r} is not offered by any loaded plugin (offered: {known})"
            )
        try:
            return factory(settings)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"{kind} backend {backend!r} is misconfigured: {exc}") from exc

    def build_hsm(self, settings: Mapping[str, Any]) -> HsmBackend:
        self._collect()
        return self._build("HSM", self._hsm_factories, settings)

    def build_storage(self, settings: Mapping[str, Any]) -> Storage:
        self._collect()
        return self._build("storage", self._storage_factories, settings)

    def build_audit_sink(self, settings: Mapping[str, Any]) -> AuditSink:
        self._collect()
        spec = dict(settings)
        spec.setdefault("backend", spec.get("type"))
        return self._build("audit sink", self._audit_factories, spec)

    def build_transport(self, settings: Mapping[str, Any]) -> Transport:
        self._collect()
        return self._build("transport", self._transport_factories, settings)

    def approval_executors(self) -> Mapping[str, Any]:
        """Executors offered by plugins for approved requests, by operation."""
        self._collect()
        return dict(self._approval_executors)

    def offered(self) -> dict[str, list[str]]:
        """What the loaded plugins offer, by kind (for ``kmsframe plugins``)."""
        self._collect()
        return {
            "algorithms": sorted(self._algorithms),
            "hsm": sorted(self._hsm_factories),
            "storage": sorted(self._storage_factories),
            "audit": sorted(self._audit_factories),
            "transports": sorted(self._transport_factories),
        }

    # -- authorization -------------------------------------------------------

    @property
    def has_authorizers(self) -> bool:
        return bool(self.pm.hook.kms_authorize.get_hookimpls())

    @property
    def has_crypto_authorizers(self) -> bool:
        """Whether an authorizer other than the built-in ones is loaded.

        Built-in authorizers judge management roles and per-key conditions;
        the key service calls the hook on the crypto path only for keys with
        conditions unless a third-party authorizer needs every call.
        """
        return any(impl.plugin_name not in self.builtins
                   for impl in self.pm.hook.kms_authorize.get_hookimpls())

    def register_builtin(self, plugin: object, name: str) -> None:
        """Register one of the core's own plugins (idempotent)."""
        if self.pm.get_plugin(name) is None:
            self.register(plugin, name)
        self.builtins.add(name)

    def authorize(self, request: AuthorizationRequest) -> Denial | None:
        for result in self.pm.hook.kms_authorize(request=request):
            if result is not None:
                return result
        return None

    # -- events (a failing listener never undoes a stored change) -------------

    def _notify(self, hook: str, **kwargs: Any) -> None:
        try:
            getattr(self.pm.hook, hook)(**kwargs)
        except Exception:
            log.exception("a %s listener failed; the change itself is stored", hook)

    def key_created(self, key: Key) -> None:
        self._notify("kms_key_created", key=key)

    def rotation_due(self, key: Key, due_at: float, next_version: int) -> None:
        self._notify("kms_rotation_due", key=key, due_at=due_at, next_version=next_version)

    def version_rotated(self, key: Key, previous_version: int, new_version: int) -> None:
        self._notify(
            "kms_version_rotated", key=key, previous_version=previous_version, new_version=new_version
        )

    def version_state_changed(
        self, key: Key, version: int, old: VersionState, new: VersionState, reason: str | None
    ) -> None:
        self._notify(
            "kms_version_state_changed",
            key=key,
            version=version,
            old_state=old,
            new_state=new,
            reason=reason,
        )

    def key_status_changed(self, key: Key, old: KeyStatus, new: KeyStatus) -> None:
        self._notify("kms_key_status_changed", key=key, old_status=old, new_status=new)

    def key_destroyed(self, key: Key) -> None:
        self._notify("kms_key_destroyed", key=key)

"""The core's own plugins, registered in every deployment the way pytest
registers its default plugins: role checks, per-key conditions and the
built-in audit sinks. Third-party plugins implement the same hooks beside
them."""

from __future__ import annotations

from ..plugins import PluginHost


def register_builtin_plugins(plugins: PluginHost) -> None:
    from ..audit import sinks
    from . import conditions, rbac

    plugins.register_builtin(rbac, rbac.PLUGIN_NAME)
    if plugins.pm.get_plugin(conditions.PLUGIN_NAME) is None:
        plugins.register_builtin(conditions.ConditionsAuthorizer(), conditions.PLUGIN_NAME)
    plugins.register_builtin(sinks, sinks.PLUGIN_NAME)

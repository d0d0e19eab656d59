"""The core's own plugins, registered in every deployment the way pytest
registers its default plugins: role checks, per-key conditions and the
built-in audit sinks. Third-party plugins implement the same hooks beside
them."""

from __future__ import annotations

from ..plugins import PluginHost
from .ratelimit import RateBuckets


def register_builtin_plugins(plugins: PluginHost, *,
                             rate_buckets: RateBuckets | None = None) -> None:
    """``rate_buckets``: where the conditions plugin keeps its rate limits
    (the node's shared table); None keeps them in process memory."""
    from ..audit import sinks
    from . import conditions, rbac

    plugins.register_builtin(rbac, rbac.PLUGIN_NAME)
    judge = plugins.pm.get_plugin(conditions.PLUGIN_NAME)
    if judge is None:
        judge = conditions.ConditionsAuthorizer()
        plugins.register_builtin(judge, conditions.PLUGIN_NAME)
    if rate_buckets is not None and isinstance(judge, conditions.ConditionsAuthorizer):
        judge.buckets = rate_buckets
    plugins.register_builtin(sinks, sinks.PLUGIN_NAME)

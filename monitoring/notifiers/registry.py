"""Which notifier types exist: our own, listed here, and third parties' through the
``updraft.monitoring.notifiers`` entry point group (same rules as monitoring writers)."""

from __future__ import annotations

from collections.abc import Mapping

from updraft.monitoring.notifiers.base import NotifierPlugin
from updraft.plugins import PluginRegistry

ENTRY_POINT_GROUP = "updraft.monitoring.notifiers"
BUILTIN: Mapping[str, str] = {
    "email": "updraft.monitoring.notifiers.mail",
    "slack": "updraft.monitoring.notifiers.slack",
    "mattermost": "updraft.monitoring.notifiers.mattermost",
}
"""Notifier type -> the module whose `PLUGIN` it is."""

REGISTRY = PluginRegistry("notifier type", ENTRY_POINT_GROUP, BUILTIN, NotifierPlugin)


def plugin(kind: str) -> NotifierPlugin:
    """The plugin of notifier type `kind`; ConfigError naming the types available if there is none."""
    return REGISTRY.get(kind)

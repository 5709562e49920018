"""Which monitoring writers exist: our own, listed here, and third parties'
through the `updraft.monitoring.writers` entry point group.

Our own are imported only when configured, so a factory without InfluxDB
never imports its client.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from updraft.errors import MonitoringError
from updraft.monitoring import notify
from updraft.monitoring.plugin import Writer, WriterPlugin
from updraft.monitoring.report import Reporter
from updraft.plugins import PluginRegistry


class MonitoringSettings(Protocol):
    """The ``monitoring:`` config section (`updraft.monitoring.config.MonitoringConfig`)."""

    # Read-only, so the frozen config model satisfies it.
    @property
    def dir(self) -> Path: ...
    @property
    def writers(self) -> Mapping[str, Any]: ...
    @property
    def deadline_seconds(self) -> float: ...
    @property
    def notifiers(self) -> Mapping[str, Any]: ...


ENTRY_POINT_GROUP = "updraft.monitoring.writers"
BUILTIN: Mapping[str, str] = {
    "json": "updraft.monitoring.writers.json_status",
    "rrd": "updraft.monitoring.writers.rrd",
    "xml": "updraft.monitoring.writers.xml_status",
    "influxdb": "updraft.monitoring.writers.influxdb",
    "status_pages": "updraft.monitoring.writers.status_pages",
}
"""Writer name -> the module whose `PLUGIN` it is."""


REGISTRY = PluginRegistry("writer", ENTRY_POINT_GROUP, BUILTIN, WriterPlugin)


def names() -> list[str]:
    """Every writer that can be configured: built-in ones, then third parties' (which cannot shadow ours)."""
    return REGISTRY.names()


def plugin(name: str) -> WriterPlugin:
    """The plugin called `name`; ConfigError naming the ones available if there is none."""
    return REGISTRY.get(name)


def loadable(writers: Mapping[str, Any]) -> list[str]:
    """The configured writers' names, each one's plugin loaded: `check-config` proves the installation has them."""
    return [name for name in writers if plugin(name) is not None]


def build(writers: Mapping[str, Any], directory: Path) -> tuple[Writer, ...]:
    """The configured writers, in configuration order, from their validated settings."""
    return _create({name: plugin(name) for name in writers}, writers, directory)


def _create(plugins: Mapping[str, WriterPlugin], writers: Mapping[str, Any], directory: Path) -> tuple[Writer, ...]:
    return tuple(plugins[name].create(settings, directory) for name, settings in writers.items())


def reporter(monitoring: MonitoringSettings) -> Reporter:
    """The configured writers behind their error boundaries, each after the writers it requires;
    the notifiers, when any are configured, as one more writer that never waits for its deliveries."""
    plugins = {name: plugin(name) for name in monitoring.writers}
    requires = {name: found.requires for name, found in plugins.items()}
    writers = _create(plugins, monitoring.writers, monitoring.dir)
    if monitoring.notifiers:
        writers = (*writers, notify.Notifications(notify.build(monitoring.notifiers), monitoring.dir))
    return Reporter(writers, monitoring.deadline_seconds, requires)


def check(writers: Mapping[str, Any], directory: Path) -> list[str]:
    """What the configured writers find wrong with their files on disk (for `reconfig`)."""
    problems: list[str] = []
    for name, settings in writers.items():
        found = plugin(name)
        if found.check is None:
            continue
        try:
            problems.extend(f"monitoring {name}: {p}" for p in found.check(settings, directory))
        except MonitoringError as err:
            problems.append(f"monitoring {name}: files not checked: {err}")
    return problems

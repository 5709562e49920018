"""One way to find plugins: our own in an explicit registry, third parties' through an entry-point group.

Monitoring writers and grid types both use it. Ours are imported only when
asked for, so a factory without InfluxDB never imports its client, and a
third party's plugin can never shadow one of ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from updraft.errors import ConfigError

P = TypeVar("P")


def _listed(names: list[str]) -> str:
    return f"available: {', '.join(names)}"


@dataclass(frozen=True)
class PluginRegistry(Generic[P]):
    """The plugins of one kind: each module in `builtin` (name -> module) or entry point exports `PLUGIN`."""

    kind: str
    """What a plugin is called in messages ("writer", "grid type")."""
    group: str
    """The entry-point group third parties register under."""
    builtin: Mapping[str, str]
    plugin_type: type[P]
    available: Callable[[list[str]], str] = _listed
    """How an error about an unknown name lists the known ones."""

    def names(self) -> list[str]:
        """Every plugin that can be named: ours in registry order, then third parties' sorted."""
        third = sorted({ep.name for ep in entry_points(group=self.group) if ep.name not in self.builtin})
        return [*self.builtin, *third]

    def is_known(self, name: str) -> bool:
        """True if `name` is ours or a third party's, without importing either."""
        return name in self.builtin or any(ep.name == name for ep in entry_points(group=self.group))

    def get(self, name: str) -> P:
        """The plugin called `name`; ConfigError if none is, if it cannot be imported, or if it is not a plugin."""
        try:
            found = self._load(name)
        except ImportError as err:  # a broken installation or a third party's missing dependency
            raise ConfigError(f"{self.kind} {name!r} cannot be loaded: {err}") from err
        if not isinstance(found, self.plugin_type):
            raise ConfigError(f"{self.kind} {name!r}: its entry point is not an updraft {self.plugin_type.__name__}")
        return found

    def _load(self, name: str) -> object:
        if name in self.builtin:
            return import_module(self.builtin[name]).PLUGIN
        matches = [ep for ep in entry_points(group=self.group) if ep.name == name]
        if not matches:
            raise ConfigError(f"unknown {self.kind} {name!r} ({self.available(self.names())})")
        return matches[0].load()

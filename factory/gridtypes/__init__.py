"""Which grid types exist: our own, listed here, and third parties' through the
``updraft.grid_types`` entry point group.

Our own are imported only when an entry uses them (or an error message
needs to say which grid type a key belongs to), the way monitoring writers
are (`updraft.monitoring.registry`). How to write one: docs/grid-types.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from pydantic import BaseModel

from updraft.config import model_at
from updraft.errors import ConfigError
from updraft.factory.gridtypes.plugin import GridTypePlugin, Implied, LifetimeMargin, NoSettings, Problem
from updraft.plugins import PluginRegistry

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "GridTypePlugin",
    "Implied",
    "LifetimeMargin",
    "NoSettings",
    "Problem",
    "is_known",
    "names",
    "owners_of",
    "plugin",
    "settings_keys",
    "unknown_grid_type",
]

ENTRY_POINT_GROUP = "updraft.grid_types"
BUILTIN: Mapping[str, str] = MappingProxyType(
    {
        "condor": "updraft.factory.gridtypes.condor",
        "arc": "updraft.factory.gridtypes.arc",
        "batch": "updraft.factory.gridtypes.batch",
        "ec2": "updraft.factory.gridtypes.ec2",
        "gce": "updraft.factory.gridtypes.gce",
    }
)
"""Grid type name -> the module whose `PLUGIN` it is (in the order error messages list them)."""


def _expected(known: list[str]) -> str:
    quoted = [repr(name) for name in known]
    expected = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"Input should be {expected}"


REGISTRY = PluginRegistry("grid type", ENTRY_POINT_GROUP, BUILTIN, GridTypePlugin, _expected)


def names() -> list[str]:
    """Every grid type an entry can name: ours, then third parties' (which cannot shadow ours)."""
    return REGISTRY.names()


def is_known(name: str) -> bool:
    """True if `name` is ours or a third party's, without importing either."""
    return REGISTRY.is_known(name)


def unknown_grid_type() -> str:
    """What the config loader says about a grid type nobody provides: the ones that exist."""
    return _expected(names())


def plugin(name: str) -> GridTypePlugin:
    """The plugin of grid type `name`; ConfigError naming the ones available if there is none."""
    found = REGISTRY.get(name)
    if found.name != name:
        raise ConfigError(f"grid type {name!r}: its plugin calls itself {found.name!r}")
    return found


def owners_of(key_path: Sequence[str | int], besides: str) -> list[str]:
    """Our grid types other than `besides` whose settings have `key_path` (e.g. ``("cloud", "zone")``).

    For messages that say whose setting a refused key is. The grid type a
    key is named after comes first (``batch_queue``: batch, then arc).
    Third parties' are not imported for a message.
    """
    owners = [name for name in BUILTIN if name != besides and _has_key(plugin(name).settings, key_path)]
    first_key = str(key_path[0]) if key_path else ""
    return sorted(owners, key=lambda name: not first_key.startswith(f"{name}_"))


def _has_key(model: type[BaseModel], key_path: Sequence[str | int]) -> bool:
    if not key_path:
        return False
    parent = model_at(model, tuple(key_path[:-1]))
    return parent is not None and key_path[-1] in parent.model_fields


def settings_keys(model: type[BaseModel], key_path: Sequence[str | int]) -> tuple[str, ...]:
    """The keys the mapping at `key_path` of a settings model allows (empty if none is known there)."""
    found = model_at(model, tuple(key_path))
    return tuple(found.model_fields) if found is not None else ()

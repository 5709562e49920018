"""The factory's configuration: who it is, where it submits, and its entries.

An entry is one place pilots can be sent (a CE, a batch system, a cloud);
the frontend sees entries as ads in the WMS collector and asks for pilots on
them. See ``etc/factory.yaml`` for a commented example.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field

from updraft.config import (
    AbsolutePath,
    AttrName,
    AttrValue,
    ConfigModel,
    FrozenMap,
    HostPort,
    Loaded,
    Name,
    NonEmptyStr,
    NonNegativeInt,
    PositiveInt,
    load_layered,
)

GridType = Literal["condor", "arc", "batch", "ec2", "gce"]


class EntryLimits(ConfigModel):
    """Caps on one entry's pilots; the factory stops submitting when one is reached."""

    max_pilots: NonNegativeInt = 100
    max_idle: NonNegativeInt = 20
    max_held: NonNegativeInt = 10


class Entry(ConfigModel):
    """One place pilots are submitted to, and what its entry ad advertises."""

    enabled: bool = True
    downtime: bool = False
    """Advertised as in downtime: frontends request nothing here, running pilots are left alone."""
    grid_type: GridType
    resource: NonEmptyStr
    attributes: FrozenMap[AttrName, AttrValue] = Field(default_factory=dict)
    limits: EntryLimits = Field(default_factory=EntryLimits)

    @property
    def grid_resource(self) -> str:
        """The HTCondor ``grid_resource`` submit value, e.g. ``condor ce@site1.lab host:port``."""
        return f"{self.grid_type} {self.resource}"


class FactoryConfig(ConfigModel):
    """The whole factory configuration, after merging ``factory.yaml`` and ``factory.d/``."""

    name: Name
    wms_collector: HostPort
    schedd: NonEmptyStr
    work_dir: AbsolutePath = Path("/var/lib/updraft/factory")
    cycle_seconds: PositiveInt = 60
    entries: FrozenMap[Name, Entry] = Field(default_factory=dict)


def load_factory_config(
    path: Path | str, *, on_warning: Callable[[str], None] | None = None
) -> Loaded[FactoryConfig]:
    """Read and validate the factory config at `path` plus its ``.d/`` drop-ins.

    Warnings go to `on_warning`, or to the ``updraft.config`` log if it is None.
    """
    return load_layered(path, FactoryConfig, on_warning=on_warning)

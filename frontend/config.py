"""The frontend's configuration: its VO pool, the factories it trusts, its groups.

A group is a slice of the VO's jobs (``job_constraint``) with its own rule
for which factory entries suit them (``match_expr``) and its own pilot
limits. See ``etc/frontend.yaml`` for a commented example.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from updraft.config import (
    ClassAdExpr,
    ConfigModel,
    FrozenList,
    FrozenMap,
    HostPort,
    Identity,
    Loaded,
    Name,
    NonEmptyStr,
    NonNegativeInt,
    PositiveInt,
    load_layered,
)


class FactoryRef(ConfigModel):
    """A factory the frontend works with; its ads count only if they come from `identity`."""

    identity: Identity


class GroupLimits(ConfigModel):
    """Caps on the pilots one group asks for, across all entries."""

    max_idle_pilots: NonNegativeInt = 50
    max_running_pilots: NonNegativeInt = 500


class Group(ConfigModel):
    """Which jobs the group covers, which entries suit them, and how many pilots at most."""

    enabled: bool = True
    job_constraint: ClassAdExpr = "true"
    match_expr: ClassAdExpr = "true"
    limits: GroupLimits = Field(default_factory=GroupLimits)


class FrontendConfig(ConfigModel):
    """The whole frontend configuration, after merging ``frontend.yaml`` and ``frontend.d/``."""

    name: Name
    vo_collector: HostPort
    wms_collector: HostPort
    schedds: FrozenList[NonEmptyStr] = ()
    """Schedds whose jobs count; empty means every schedd in the VO collector."""
    cycle_seconds: PositiveInt = 60
    factories: FrozenMap[Name, FactoryRef] = Field(min_length=1)
    groups: FrozenMap[Name, Group] = Field(min_length=1)


def load_frontend_config(
    path: Path | str, *, on_warning: Callable[[str], None] | None = None
) -> Loaded[FrontendConfig]:
    """Read and validate the frontend config at `path` plus its ``.d/`` drop-ins.

    Warnings go to `on_warning`, or to the ``updraft.config`` log if it is None.
    """
    return load_layered(path, FrontendConfig, on_warning=on_warning)

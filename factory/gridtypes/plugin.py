"""What a grid type plugin is: its settings model, its template, its checks.

A grid type is one way of reaching the place a pilot runs (an HTCondor-CE,
an ARC CE, a batch system through the blahp, a cloud). Everything that
differs between grid types lives in the grid type's plugin, so adding one
is one module holding a `GridTypePlugin` called ``PLUGIN`` plus one
template; third parties publish theirs under the ``updraft.grid_types``
entry point group (docs/grid-types.md).

The entry's keys that are not common to every entry (``batch_system``,
``cloud``...) are validated by the plugin's `settings` model when the
config is loaded, so a misspelt option is caught by ``check-config``
and named with its file and key. The YAML stays flat: an entry's grid type
settings sit next to its common keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from updraft.config import ConfigModel

CeCredentials = Literal["refused", "accepted", "required"]
"""Whether the factory authenticates to the grid type's CE with a proxy or token file."""

DEFAULT_TEMPLATE_PACKAGE = "updraft.factory"
"""The package whose ``templates/`` folder holds our templates (and ``pilot.sub.j2`` they extend)."""


class NoSettings(ConfigModel):
    """For grid types with nothing of their own to configure: any extra key is a mistake."""


@dataclass(frozen=True)
class Problem:
    """Why an entry cannot be rendered: its key (relative to the entry, e.g. ``cloud``) and what is wrong."""

    key: str
    message: str


@dataclass(frozen=True)
class Implied:
    """A value one of the entry's common keys must have because of the grid type's own keys.

    A batch entry's ``cpus_per_node`` is what its ``attributes.GLIDEIN_CPUS`` advertises, so
    frontends size their requests by what the batch system allocates. Where the entry leaves
    `key` unset it gets `value` (one source of truth, the rest of the factory reads the common
    key); where it sets it, the two must agree (``at_most``: the entry may set less), or the
    entry is refused at `source`, naming both keys.
    """

    key: str
    """The common key, dotted: ``max_walltime_seconds``, ``attributes.GLIDEIN_CPUS``."""
    value: int
    source: str
    """The grid type's key that fixes it (``cpus_per_node``)."""
    why: str
    """What a disagreement would break, for the message."""
    at_most: bool = False
    """True: the entry may set `key` to less than `value` (e.g. memory it advertises, kept under
    what it requests), never more."""
    fills_in: bool = True
    """False: only a check; where the entry leaves `key` unset it stays unset."""


@dataclass(frozen=True)
class LifetimeMargin:
    """How long before the entry's ``max_walltime_seconds`` ends the pilot must be gone, and the key
    that says so: the glidein is told ``max_walltime_seconds - seconds`` as its walltime."""

    key: str
    seconds: int


@dataclass(frozen=True)
class GridTypePlugin:
    """One grid type: how its part of an entry is validated, written and checked.

    The hooks take the entry's validated settings (an instance of
    `settings`) and its ``resource`` rather than the whole entry, so a
    plugin depends on nothing but its own model.
    """

    name: str
    """The entry's ``grid_type``, and the first word of HTCondor's ``grid_resource``."""
    settings: type[ConfigModel]
    """The grid type's keys of an entry (every key an entry has beyond the common ones)."""
    template: str
    """The submit description template, e.g. ``condor.sub.j2``; it extends ``pilot.sub.j2``."""
    template_package: str = DEFAULT_TEMPLATE_PACKAGE
    """The package whose ``templates/`` folder holds `template` (a third party's own package)."""
    grid_resource: Callable[[Any, str], str] | None = None
    """(settings, resource) -> HTCondor's ``grid_resource``; None: ``<name> <resource>``."""
    checks: Callable[[Any, str], Sequence[Problem]] | None = None
    """(settings, resource) -> what keeps a pilot from being rendered. These run when the config
    is loaded (each problem at its key, e.g. ``entries.vm.cloud``, all listed at once), and again
    as a last guard when pilots are rendered. A `Problem`'s key may name a nested key with dots
    (``cloud.instance_type``)."""
    ce_credentials: CeCredentials = "refused"
    """``required``: no pilot without a proxy or token file; ``accepted``: with or without one."""
    transfers_files: bool = True
    """False for machine images (clouds): no input files; the pilot token travels in user data."""
    secret_user_data: Callable[[str], str] | None = None
    """(token) -> the text of the file that carries the pilot token into a VM with its user data
    (`updraft.factory.gridtypes.cloud`); None: the grid type's pilots take no user data."""
    implies: Callable[[Any], Sequence[Implied]] | None = None
    """(settings) -> values of the entry's common keys its grid type keys fix (see `Implied`)."""
    lifetime_margin: Callable[[Any], LifetimeMargin] | None = None
    """(settings) -> how long before the walltime the pilot must be gone; None: no margin (0 s)."""

    def grid_resource_for(self, settings: ConfigModel, resource: str) -> str:
        """HTCondor's ``grid_resource`` for an entry of this grid type."""
        if self.grid_resource is None:
            return f"{self.name} {resource}"
        return self.grid_resource(settings, resource)

    def implied(self, settings: ConfigModel) -> list[Implied]:
        """The common keys an entry of this grid type has because of its own keys (empty: none)."""
        return [] if self.implies is None else list(self.implies(settings))

    def margin(self, settings: ConfigModel) -> LifetimeMargin | None:
        """How long before the walltime an entry's pilot must be gone (None: the grid type says nothing)."""
        return None if self.lifetime_margin is None else self.lifetime_margin(settings)

    def problems(self, settings: ConfigModel, resource: str) -> list[Problem]:
        """Every reason an entry of this grid type cannot be rendered (empty: it can)."""
        return [] if self.checks is None else list(self.checks(settings, resource))

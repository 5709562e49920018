"""ARC CE: HTCondor writes the job's ADL description from the submit commands.

The entry's ``resource`` is the CE's REST endpoint. An ARC CE accepts a
pilot only with a proxy or token file, so one is required.
"""

from __future__ import annotations

from updraft.config import ConfigModel, NonBlankStr
from updraft.factory.gridtypes.plugin import GridTypePlugin


class ArcSettings(ConfigModel):
    """An arc entry's own keys."""

    batch_queue: NonBlankStr | None = None
    """The queue (partition) pilots go to; the site's default if unset."""
    arc_rte: NonBlankStr | None = None
    """Runtime environments, HTCondor's ``arc_rte`` syntax (``ENV/PROXY,ENV/X opt``)."""
    arc_resources: NonBlankStr | None = None
    """Extra ADL XML for the job's ``<Resources>`` element (``arc_resources``)."""


PLUGIN = GridTypePlugin(
    name="arc",
    settings=ArcSettings,
    template="arc.sub.j2",
    ce_credentials="required",
)

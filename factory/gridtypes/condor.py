"""HTCondor-C: pilots go to an HTCondor-CE's schedd, which runs them as vanilla jobs.

The entry's ``resource`` is the rest of ``grid_resource``: the remote
schedd's name, then its collector's host:port. The grid type has no
settings of its own; the factory authenticates to the CE with the
frontend's token (or a proxy) when it has one.
"""

from __future__ import annotations

from updraft.factory.gridtypes.plugin import GridTypePlugin, NoSettings

PLUGIN = GridTypePlugin(
    name="condor",
    settings=NoSettings,
    template="condor.sub.j2",
    ce_credentials="accepted",
)

"""The frontend's staging area and what its request ads tell the pilots.

Each group gets one release: the frontend's shared ``staging.files``, then
the group's ``staging_files``. The release's manifest URL and digest, the
pool to join and the group's START travel in every request ad of the group
(`updraft.protocol.PilotParams`); the factory puts them in the pilots'
submit descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from updraft.frontend.config import FrontendConfig
from updraft.protocol import PilotParams
from updraft.staging import StagingRelease, publish_all


def stage_groups(config: FrontendConfig) -> Mapping[str, StagingRelease]:
    """Publish every enabled group's release; {} without a staging area."""
    own = {name: group.staging_files for name, group in config.groups.items() if group.enabled}
    return publish_all(config.staging, own, "groups", "frontend")


def pilot_params(config: FrontendConfig, releases: Mapping[str, StagingRelease]) -> Mapping[str, PilotParams]:
    """Per group: what its pilots are told."""
    collector = config.pilot_collector or config.vo_collector
    params = {}
    for name, group in config.groups.items():
        release = releases.get(name)
        params[name] = PilotParams(
            collector=collector,
            manifest_url=release.manifest_url if release else "",
            manifest_sha256=release.manifest_sha256 if release else "",
            group_start=group.pilot_start or "",
        )
    return MappingProxyType(params)

"""The factory's staging area: one release per configured entry, written by `reconfig` and at start.

Every entry gets the factory's shared ``staging.files`` then its own
``staging_files``; its release's manifest URL and digest go into each
pilot's submit description (`updraft.factory.pilot_args`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from updraft.factory.config import FactoryConfig
from updraft.staging import StagingRelease, configured_files, publish, read_files


def stage_entries(config: FactoryConfig) -> Mapping[str, StagingRelease]:
    """Publish every enabled entry's release (unchanged ones cost a read and a hash); {} without staging."""
    if config.staging is None:
        return MappingProxyType({})
    releases = {}
    for name, entry in config.entries.items():
        if not entry.enabled:
            continue
        files = configured_files(config.staging, entry.staging_files, f"entries.{name}.staging_files")
        releases[name] = publish(config.staging, name, read_files(files, "entry"))
    return MappingProxyType(releases)

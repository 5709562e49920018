"""The factory's staging area: one release per enabled entry, written by `reconfig` and at start.

Every entry gets the factory's shared ``staging.files`` then its own
``staging_files``; its release's manifest URL and digest go into each
pilot's submit description (`updraft.factory.pilot_args`).
"""

from __future__ import annotations

from collections.abc import Mapping

from updraft.factory.config import FactoryConfig
from updraft.staging import StagingRelease, publish_all


def stage_entries(config: FactoryConfig) -> Mapping[str, StagingRelease]:
    """Publish every enabled entry's release (unchanged ones cost a read and a hash); {} without staging."""
    own = {name: entry.staging_files for name, entry in config.entries.items() if entry.enabled}
    return publish_all(config.staging, own, "entries", "entry")

"""The factory's staging area: one release per enabled entry, written by `reconfig` and at start.

Every entry gets the factory's shared ``staging.files`` then its own
``staging_files``; its release's manifest URL and digest go into each
pilot's submit description (`updraft.factory.pilot_args`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from updraft.factory import gridtypes
from updraft.factory.config import Entry, FactoryConfig
from updraft.factory.gridtypes.cloud import VM_GLIDEIN
from updraft.staging import StagedFileConfig, StagingRelease, publish_all


def stage_entries(config: FactoryConfig) -> Mapping[str, StagingRelease]:
    """Publish every enabled entry's release (unchanged ones cost a read and a hash); {} without staging."""
    own = {name: _entry_files(config, entry) for name, entry in config.entries.items() if entry.enabled}
    return publish_all(config.staging, own, "entries", "entry")


def _entry_files(config: FactoryConfig, entry: Entry) -> Sequence[StagedFileConfig]:
    """The entry's own files; a cloud entry's release also lists the glidein, which no job transfers to a
    VM: its bootstrap fetches it by the release's manifest (`updraft.factory.gridtypes.cloud`)."""
    if gridtypes.plugin(entry.grid_type).secret_user_data is None:
        return entry.staging_files
    return (*entry.staging_files, StagedFileConfig(source=config.pilot.executable, kind="file", name=VM_GLIDEIN))

"""What the factory tells a glidein: its command line and environment, from config and request.

The submit description is the pilot's trusted channel, so everything the
pilot must be able to trust travels here: the digests of both manifests,
the pool to join, the entry's lifetime and protection settings. Pure: the
same entry, release and request always give the same words, which is what
the golden files and the unit tests check.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from updraft.factory.config import Entry, nodes_in
from updraft.protocol import PilotParams
from updraft.staging import StagingRelease

GLIDEIN_PREFIX = "GLIDEIN_"


def glidein_arguments(
    entry: Entry,
    release: StagingRelease | None,
    params: PilotParams,
    extra: str = "",
    *,
    domains: tuple[str, str] | None = None,
) -> tuple[str, ...]:
    """glidein_startup.sh's options for one pilot of `entry` asked for with `params`.

    Options the pilot takes from its environment anyway are still written
    here, so ``condor_q -l`` shows a pilot's whole setup in one place.
    `domains` are the pilot's FILESYSTEM_DOMAIN and UID_DOMAIN, the ones its
    entry ad announces (`updraft.factory.slotad.pilot_domains`); the factory
    always gives them (None leaves HTCondor's default, the worker's host name).
    """
    glidein = entry.glidein
    args: list[str] = []
    if release is not None:
        args += ["--manifest-url", release.manifest_url, "--manifest-sha256", release.manifest_sha256]
    if params.manifest_url:
        args += ["--frontend-manifest-url", params.manifest_url, "--frontend-manifest-sha256", params.manifest_sha256]
    if params.collector:
        args += ["--collector", params.collector]
    args += [
        "--max-walltime",
        str(entry.pilot_walltime_seconds),
        "--max-job-time",
        str(glidein.max_job_seconds),
        "--shutdown-margin",
        str(glidein.shutdown_margin_seconds),
        "--spread",
        str(glidein.retire_spread_seconds),
        "--max-idle",
        str(glidein.max_idle_seconds),
        "--idle-tail",
        str(glidein.idle_tail_seconds),
        "--failure-sleep",
        str(glidein.failure_sleep_seconds),
    ]
    if domains is not None:
        args += ["--filesystem-domain", domains[0], "--uid-domain", domains[1]]
    if glidein.condor_dir is not None:
        args += ["--condor-dir", str(glidein.condor_dir)]
    elif glidein.condor_tarball is not None:
        args += [
            "--condor-tarball-url",
            glidein.condor_tarball.url,
            "--condor-tarball-sha256",
            glidein.condor_tarball.sha256,
        ]
    if glidein.blackhole_jobs:
        args += [
            "--blackhole-jobs",
            str(glidein.blackhole_jobs),
            "--blackhole-window",
            str(glidein.blackhole_window_seconds),
        ]
    nodes = nodes_in(entry.attributes)
    if nodes > 1:
        args += ["--nodes", str(nodes)]
        if glidein.node_launcher:
            args += ["--node-launcher", glidein.node_launcher]
        if glidein.node_scratch is not None:
            args += ["--node-scratch", str(glidein.node_scratch)]
    return (*args, *shlex.split(extra))


def glidein_environment(entry: Entry, params: PilotParams) -> tuple[tuple[str, object], ...]:
    """Variables the pilot reads: what the entry advertises, its settings, then ``pilot_attributes``.

    The entry's advertised ``GLIDEIN_*`` attributes go first so that a
    pilot advertises what frontends matched against (its site, its cores);
    ``pilot_attributes`` come last and win.
    """
    variables: dict[str, object] = {
        name: value for name, value in entry.attributes.items() if name.startswith(GLIDEIN_PREFIX)
    }
    if entry.memory_mb is not None:
        variables.setdefault("GLIDEIN_MaxMemMBs", entry.memory_mb)
    variables["GLIDEIN_Slots_Layout"] = entry.glidein.slots_layout
    if entry.glidein.start:
        variables["GLIDEIN_Entry_Start"] = entry.glidein.start
    if params.group_start:
        variables["GLIDECLIENT_Group_Start"] = params.group_start
    return tuple(_merged(variables, entry.pilot_attributes).items())


def _merged(base: Mapping[str, object], override: Mapping[str, object]) -> dict[str, object]:
    return {**base, **override}

"""The configuration fields every Updraft service has, declared once.

The factory's and the frontend's configs extend `ServiceConfig`; a field
here means the same in both, so the loop, the ports and the monitoring can
rely on it whichever service they serve.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from updraft.config import AbsolutePath, ConfigModel, HostPort, IntervalSeconds, Name, TimeoutSeconds
from updraft.filechecks import ReadHere
from updraft.monitoring.config import MonitoringConfig


class ServiceConfig(ConfigModel):
    """Name, collectors, cycle and deadline, HTCondor client config, monitoring, work folder."""

    name: Name
    wms_collector: HostPort
    """The collector where factories advertise entries and frontends publish requests."""
    cycle_seconds: IntervalSeconds = 60
    """Seconds between two cycles: 1 up to 30 days."""
    query_timeout_seconds: TimeoutSeconds = 20.0
    """Longest wait for one answer from a schedd or collector. One that does not answer in time
    (down, or accepting connections and never answering) is unreachable for the rest of the cycle:
    the cycle costs one timeout, never one per call. Above 0, at most a day."""
    condor_config: ReadHere | None = None
    """The HTCondor client configuration to use (CONDOR_CONFIG); unset: the environment's."""
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    work_dir: AbsolutePath = Path("/var/lib/updraft")
    """The service's own files (pid file, state, logs of pilots); each service sets its default."""

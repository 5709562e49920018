"""The factory's configuration: who it is, where it submits, and its entries.

An entry is one place pilots can be sent (a CE, a batch system, a cloud);
the frontend sees entries as ads in the WMS collector and asks for pilots on
them. See ``etc/factory.yaml`` for a commented example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from updraft import protocol
from updraft.config import (
    AbsolutePath,
    AttrName,
    AttrValue,
    ConfigModel,
    FrozenMap,
    HostPort,
    Loaded,
    Name,
    NonEmptyStr,
    NonNegativeInt,
    PositiveInt,
    load_layered,
)

GridType = Literal["condor", "arc", "batch", "ec2", "gce"]
BatchSystem = Literal["slurm", "pbs", "lsf", "sge", "condor"]

RESERVED_PILOT_PREFIX = "UPDRAFT_"
"""Pilot environment names the factory sets itself (the pilot's identity)."""

_SSH_HOST = re.compile(r"[^@\s]+@[^@\s]+")


def _check_ssh_host(value: str) -> str:
    if _SSH_HOST.fullmatch(value):
        return value
    raise PydanticCustomError("ssh_host", "expected user@host (the login the batch system is reached over ssh)")


SshHost = Annotated[str, AfterValidator(_check_ssh_host)]


class EntryLimits(ConfigModel):
    """Caps on one entry's pilots; the factory stops submitting when one is reached."""

    max_pilots: NonNegativeInt = 100
    max_idle: NonNegativeInt = 20
    max_held: NonNegativeInt = 10


class CloudSettings(ConfigModel):
    """The virtual machine an ec2 or gce entry starts: the pilot is the machine's image.

    Only paths to credential files are configured, never the secrets
    themselves, so a config file can be shown or shared without leaking one.
    """

    image: NonEmptyStr
    """``ec2_ami_id`` or ``gce_image``."""
    instance_type: NonEmptyStr
    """``ec2_instance_type`` or ``gce_machine_type``."""
    key_name: NonEmptyStr | None = None
    """ec2 only: a key pair already registered with EC2 (``ec2_keypair``)."""
    zone: NonEmptyStr | None = None
    """ec2 only: ``ec2_availability_zone``. (The region is in the service URL, the entry's
    ``resource``; a gce zone is the third word of ``resource``.)"""
    access_key_file: AbsolutePath | None = None
    """ec2 only: file holding the access key id (``ec2_access_key_id``)."""
    secret_key_file: AbsolutePath | None = None
    """ec2 only: file holding the secret access key (``ec2_secret_access_key``)."""
    auth_file: AbsolutePath | None = None
    """gce only: the authorization file (``gce_auth_file``); without it the gcloud default is used."""


_EC2_ONLY_CLOUD = ("key_name", "zone", "access_key_file", "secret_key_file")
_GCE_ONLY_CLOUD = ("auth_file",)
_GRID_TYPES_OF = {
    "ssh_host": ("batch",),
    "batch_queue": ("batch", "arc"),
    "arc_rte": ("arc",),
    "arc_resources": ("arc",),
    "cloud": ("ec2", "gce"),
}
"""The grid types each optional submit setting belongs to."""


class Entry(ConfigModel):
    """One place pilots are submitted to, and what its entry ad advertises.

    ``resource`` is the rest of the HTCondor ``grid_resource`` after the grid
    type for condor, arc, ec2 and gce. A batch entry's grid_resource is built
    from ``batch_system`` (and ``ssh_host``) instead, so there ``resource`` is
    only a label for people (e.g. ``slurm@hpc.example.org``).
    """

    enabled: bool = True
    downtime: bool = False
    """Advertised as in downtime: frontends request nothing here, running pilots are left alone."""
    grid_type: GridType
    resource: NonEmptyStr
    attributes: FrozenMap[AttrName, AttrValue] = Field(default_factory=dict)
    limits: EntryLimits = Field(default_factory=EntryLimits)
    batch_system: BatchSystem | None = None
    """batch entries only, and required there: the batch system the blahp submits to."""
    ssh_host: SshHost | None = None
    """batch entries only: ``user@host`` of a remote login node, reached over ssh (BOSCO style)."""
    batch_queue: NonEmptyStr | None = None
    """batch and arc entries: the queue (partition) pilots go to; the site's default if unset."""
    arc_rte: NonEmptyStr | None = None
    """arc entries only: runtime environments, HTCondor's ``arc_rte`` syntax (``ENV/PROXY,ENV/X opt``)."""
    arc_resources: NonEmptyStr | None = None
    """arc entries only: extra ADL XML for the job's ``<Resources>`` element (``arc_resources``)."""
    cloud: CloudSettings | None = None
    """ec2 and gce entries only: the machine to start (checked as required when pilots are rendered)."""
    max_walltime_seconds: PositiveInt = 86400
    """A pilot running longer than this is removed by its own ``periodic_remove``."""
    memory_mb: PositiveInt | None = None
    """Memory each pilot requests; unset leaves it to the site."""
    pilot_attributes: FrozenMap[AttrName, AttrValue] = Field(default_factory=dict)
    """Passed to the pilot itself (its environment, or the VM's user data / metadata)."""

    @field_validator("batch_system", mode="after")
    @classmethod
    def _batch_system_on_batch_entries(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Required on batch entries (it names the blahp back end), meaningless elsewhere."""
        grid_type = info.data.get("grid_type")
        if grid_type == "batch" and value is None:
            raise PydanticCustomError(
                "batch_system_missing", "required for batch entries: one of slurm, pbs, lsf, sge, condor")
        if grid_type not in (None, "batch") and value is not None:
            raise PydanticCustomError(
                "grid_type_setting", "only for batch entries, not {grid_type}", {"grid_type": grid_type})
        return value

    @field_validator(*_GRID_TYPES_OF, mode="after")
    @classmethod
    def _only_on_its_grid_types(cls, value: object, info: ValidationInfo) -> object:
        """A setting of another grid type would be silently ignored when rendering: refuse it."""
        grid_type = info.data.get("grid_type")
        types = _GRID_TYPES_OF[info.field_name]
        if value is not None and grid_type is not None and grid_type not in types:
            raise PydanticCustomError(
                "grid_type_setting", "only for {types} entries, not {grid_type}",
                {"types": " and ".join(types), "grid_type": grid_type})
        return value

    @field_validator("cloud", mode="after")
    @classmethod
    def _cloud_fits_its_provider(cls, value: CloudSettings | None, info: ValidationInfo) -> CloudSettings | None:
        grid_type = info.data.get("grid_type")
        if value is None or grid_type not in ("ec2", "gce"):
            return value
        other_only = _GCE_ONLY_CLOUD if grid_type == "ec2" else _EC2_ONLY_CLOUD
        unused = [name for name in other_only if getattr(value, name) is not None]
        if unused:
            raise PydanticCustomError(
                "cloud_setting", "{names} not used by {grid_type} entries",
                {"names": ", ".join(unused), "grid_type": grid_type})
        if (value.access_key_file is None) != (value.secret_key_file is None):
            raise PydanticCustomError(
                "cloud_keys", "access_key_file and secret_key_file go together: set both or neither")
        return value

    @field_validator("pilot_attributes", mode="after")
    @classmethod
    def _no_reserved_pilot_names(cls, value: Mapping[str, object]) -> Mapping[str, object]:
        """The factory sets UPDRAFT_* itself; a configured one would forge the pilot's identity."""
        reserved = sorted(name for name in value if name.upper().startswith(RESERVED_PILOT_PREFIX))
        if reserved:
            raise PydanticCustomError(
                "reserved_name", "{names}: names starting with {prefix} are reserved for the pilot identity",
                {"names": ", ".join(reserved), "prefix": RESERVED_PILOT_PREFIX})
        return value

    @property
    def grid_resource(self) -> str:
        """The HTCondor ``grid_resource`` submit value, e.g. ``condor ce@site1.lab host:port``.

        Batch: ``batch slurm``, or ``batch slurm user@host`` when the batch
        system is reached over ssh.
        """
        if self.grid_type == "batch":
            return " ".join(part for part in ("batch", self.batch_system, self.ssh_host) if part)
        return f"{self.grid_type} {self.resource}"

    @property
    def cpus_per_pilot(self) -> int:
        """GLIDEIN_CPUS when it is a positive integer; anything else (e.g. "auto") means 1."""
        cpus = self.attributes.get(protocol.E_CPUS, 1)
        return cpus if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 0 else 1


class FactoryConfig(ConfigModel):
    """The whole factory configuration, after merging ``factory.yaml`` and ``factory.d/``."""

    name: Name
    wms_collector: HostPort
    schedd: NonEmptyStr
    work_dir: AbsolutePath = Path("/var/lib/updraft/factory")
    cycle_seconds: PositiveInt = 60
    entries: FrozenMap[Name, Entry] = Field(default_factory=dict)


def load_factory_config(
    path: Path | str, *, on_warning: Callable[[str], None] | None = None
) -> Loaded[FactoryConfig]:
    """Read and validate the factory config at `path` plus its ``.d/`` drop-ins.

    Warnings go to `on_warning`, or to the ``updraft.config`` log if it is None.
    """
    return load_layered(path, FactoryConfig, on_warning=on_warning)

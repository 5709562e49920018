"""Batch systems through the blahp, locally or on a remote login node over ssh (BOSCO style).

A batch entry's ``grid_resource`` is built from ``batch_system`` (and
``ssh_host``), so its ``resource`` is only a label for people (e.g.
``slurm@hpc.example.org``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, field_validator
from pydantic_core import PydanticCustomError

from updraft.config import MAX_TEXT_LENGTH, ConfigModel, NonBlankStr
from updraft.factory.gridtypes.plugin import GridTypePlugin

BatchSystem = Literal["slurm", "pbs", "lsf", "sge", "condor"]

_SSH_HOST = re.compile(r"[^@\s]+@[^@\s]+")


def _check_ssh_host(value: str) -> str:
    if len(value) <= MAX_TEXT_LENGTH and _SSH_HOST.fullmatch(value):
        return value
    raise PydanticCustomError("ssh_host", "expected user@host (the login the batch system is reached over ssh)")


SshHost = Annotated[str, AfterValidator(_check_ssh_host)]


class BatchSettings(ConfigModel):
    """A batch entry's own keys."""

    batch_system: BatchSystem | None = None
    """Required: the batch system the blahp submits to (optional in the model only so that its
    absence gets a message listing the choices)."""
    ssh_host: SshHost | None = None
    """``user@host`` of a remote login node, reached over ssh; unset: the factory's own host."""
    batch_queue: NonBlankStr | None = None
    """The queue (partition) pilots go to; the site's default if unset."""

    @field_validator("batch_system", mode="after")
    @classmethod
    def _batch_system_is_required(cls, value: str | None) -> str | None:
        """It names the blahp back end: without it no pilot can be submitted."""
        if value is None:
            raise PydanticCustomError(
                "batch_system_missing", "required for batch entries: one of slurm, pbs, lsf, sge, condor"
            )
        return value


def batch_grid_resource(settings: BatchSettings, resource: str) -> str:
    """``batch slurm``, or ``batch slurm user@host`` when the batch system is reached over ssh."""
    return " ".join(part for part in ("batch", settings.batch_system, settings.ssh_host) if part)


PLUGIN = GridTypePlugin(
    name="batch",
    settings=BatchSettings,
    template="batch.sub.j2",
    grid_resource=batch_grid_resource,
)

"""Amazon EC2 (or any EC2 API): the pilot is the image of a virtual machine the grid manager starts.

The entry's ``resource`` is the service URL alone, which also names the
region. Only paths to credential files are configured, never the secrets
themselves, so a config file can be shown or shared without leaking one.
"""

from __future__ import annotations

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from updraft.config import ConfigModel, NonBlankStr
from updraft.factory.gridtypes.plugin import GridTypePlugin, Problem
from updraft.filechecks import ReadBySchedd


class Ec2Machine(ConfigModel):
    """The instance an ec2 entry starts (``cloud:``)."""

    image: NonBlankStr
    """``ec2_ami_id``."""
    instance_type: NonBlankStr
    """``ec2_instance_type``."""
    key_name: NonBlankStr | None = None
    """A key pair already registered with EC2 (``ec2_keypair``)."""
    zone: NonBlankStr | None = None
    """``ec2_availability_zone`` (the region is in the service URL, the entry's ``resource``)."""
    access_key_file: ReadBySchedd | None = None
    """File holding the access key id (``ec2_access_key_id``)."""
    secret_key_file: ReadBySchedd | None = None
    """File holding the secret access key (``ec2_secret_access_key``)."""

    @model_validator(mode="after")
    def _keys_go_together(self) -> Ec2Machine:
        """One key file without the other would fail at the grid manager, long after check-config."""
        if (self.access_key_file is None) != (self.secret_key_file is None):
            raise PydanticCustomError(
                "cloud_keys", "access_key_file and secret_key_file go together: set both or neither"
            )
        return self


class Ec2Settings(ConfigModel):
    """An ec2 entry's own keys."""

    cloud: Ec2Machine | None = None
    """The machine to start; required (checked with the resource when the config loads, see `ec2_problems`)."""


def ec2_problems(settings: Ec2Settings, resource: str) -> list[Problem]:
    """What HTCondor's EC2 grid manager needs: the machine, and the service URL as the only word."""
    problems = []
    if settings.cloud is None:
        problems.append(Problem("cloud", "required for ec2 entries (at least image and instance_type)"))
    if len(resource.split()) != 1:
        problems.append(
            Problem(
                "resource",
                "an ec2 resource is the service URL alone, e.g. https://ec2.us-east-1.amazonaws.com/",
            )
        )
    return problems


PLUGIN = GridTypePlugin(
    name="ec2",
    settings=Ec2Settings,
    template="ec2.sub.j2",
    checks=ec2_problems,
    transfers_files=False,
)

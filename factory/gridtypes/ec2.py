"""Amazon EC2 (or any EC2 API): the pilot is the image of a virtual machine the grid manager starts.

The entry's ``resource`` is the service URL alone, which also names the
region. Only paths to credential files are configured, never the secrets
themselves, so a config file can be shown or shared without leaking one.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from updraft.config import ConfigModel, FrozenList, FrozenMap, NonBlankStr, NonNegativeLifetimeSeconds
from updraft.factory.gridtypes.cloud import CloudMachine, ec2_secret_user_data
from updraft.factory.gridtypes.plugin import GridTypePlugin, Problem
from updraft.filechecks import ReadBySchedd

RESERVED_TAG_PREFIX = "Updraft"
"""Tags the factory sets itself on every instance (UpdraftFactory, UpdraftEntry, UpdraftPilot)."""
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,127}")
_GROUP_NAME = re.compile(r"[A-Za-z0-9._:/()#@\[\]+=&;{}!$*-]{1,255}")
_PRICE = re.compile(r"\d{1,6}(\.\d{1,6})?")


def _tag_name(name: str) -> str:
    """HTCondor turns each tag into a submit command ``ec2_tag_<name>``, so a name is a word."""
    if not _TAG_NAME.fullmatch(name):
        raise PydanticCustomError("tag_name", "expected letters and digits, starting with a letter (a submit key)")
    if name.startswith(RESERVED_TAG_PREFIX):
        raise PydanticCustomError("tag_name", f"tags starting with {RESERVED_TAG_PREFIX!r} are set by the factory")
    return name


def _group_name(name: str) -> str:
    """``ec2_security_groups`` is a comma-separated list: a name with a comma would become two."""
    if "," in name or not _GROUP_NAME.fullmatch(name):
        raise PydanticCustomError(
            "group_name", "expected an EC2 security group name (no commas or spaces, at most 255 characters)"
        )
    return name


def _price(value: str) -> str:
    if not _PRICE.fullmatch(value):
        raise PydanticCustomError("spot_price", "expected a price in dollars per hour, e.g. '0.05'")
    return value


TagName = Annotated[str, AfterValidator(_tag_name)]
GroupName = Annotated[str, AfterValidator(_group_name)]


class Ec2Machine(CloudMachine):
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
    unknown_instance_grace_seconds: NonNegativeLifetimeSeconds = 300
    """An instance tagged with this factory's name that no queued pilot claims is reported once it
    was launched longer ago than this: the grid manager writes the id into the pilot's ad a few
    seconds after starting it, and the queue and the EC2 API are not read at the same instant."""
    terminate_unknown_after_seconds: NonNegativeLifetimeSeconds | None = None
    """Terminate such an instance once it was launched longer ago than this (and the grace);
    None: report it every cycle, never terminate it (`updraft.factory.cloud`)."""
    security_groups: FrozenList[GroupName] = ()
    """``ec2_security_groups``: the groups the instance joins (none: the account's default)."""
    tags: FrozenMap[TagName, NonBlankStr] = Field(default_factory=dict)
    """Tags of the operator's own, on top of the factory's (``UpdraftFactory``, ``UpdraftEntry``,
    ``UpdraftPilot``), e.g. for billing reports."""
    spot_price: Annotated[str, AfterValidator(_price)] | None = None
    """The highest price per hour for a spot instance (``ec2_spot_price``); unset: on-demand."""

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
    elif settings.cloud.access_key_file is None:
        problems.append(
            Problem("cloud.access_key_file", "required: the grid manager signs every EC2 request with the key pair")
        )
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
    secret_user_data=ec2_secret_user_data,
)

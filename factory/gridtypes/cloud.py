"""What every cloud grid type shares: the machine's keys common to all clouds, and the user data.

A cloud pilot is a virtual machine, not a job: no file travels with it.
Everything it needs to become a pilot travels in its *user data* (one
format for every cloud, `updraft.userdata`, read by the VM's bootstrap,
glidein/vm/updraft-vm-bootstrap): its identity and settings and where to
fetch the glidein (in the job ad: not secret), and the pilot token (in a
0600 file whose path alone is in the job ad). Only how a grid type's
template hands the two parts to HTCondor differs (``ec2_user_data`` and
``ec2_user_data_file``; ``gce_metadata`` and ``gce_metadata_file``).
"""

from __future__ import annotations

from updraft import userdata
from updraft.config import ConfigModel, LifetimeSeconds

DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 2 * 86400
"""Two days: a day-long pilot token refreshed hourly, with room for the frontend's refresh margin."""


class CloudMachine(ConfigModel):
    """The keys every cloud entry's ``cloud:`` has."""

    max_token_lifetime_seconds: LifetimeSeconds = DEFAULT_MAX_TOKEN_LIFETIME_SECONDS
    """The longest a pilot token may still be valid when it goes into user data; a request whose
    token lives longer (or allows more than ADVERTISE_STARTD, or never expires) gets no pilots here.
    User data can be read by anyone allowed to describe the instance (docs/security.md)."""


VM_GLIDEIN = "glidein_startup.sh"
"""The glidein's name in a cloud entry's staging release (`updraft.factory.stage`)."""
TAG_FACTORY, TAG_ENTRY, TAG_PILOT = "UpdraftFactory", "UpdraftEntry", "UpdraftPilot"
"""The tags every instance of a factory's pilots carries: its factory, entry and job id."""


def ec2_secret_user_data(token: str) -> str:
    """EC2 appends ``ec2_user_data_file``'s bytes to ``ec2_user_data``: one more pair of the query string."""
    return userdata.secret_part(token)


def gce_secret_user_data(token: str) -> str:
    """``gce_metadata_file`` holds ``name=value`` lines, one metadata item each."""
    return userdata.gce_token_line(token)

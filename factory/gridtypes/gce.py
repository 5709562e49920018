"""Google Compute Engine: the pilot is the image of a virtual machine the grid manager starts.

The entry's ``resource`` is ``<service URL> <project> <zone>``, the words
HTCondor's GCE grid manager expects after ``gce``.
"""

from __future__ import annotations

from updraft.config import ConfigModel, NonBlankStr
from updraft.factory.gridtypes.cloud import CloudMachine, gce_secret_user_data
from updraft.factory.gridtypes.plugin import GridTypePlugin, Problem
from updraft.filechecks import ReadBySchedd


class GceMachine(CloudMachine):
    """The instance a gce entry starts (``cloud:``)."""

    image: NonBlankStr
    """``gce_image``."""
    instance_type: NonBlankStr
    """``gce_machine_type``."""
    auth_file: ReadBySchedd | None = None
    """The authorization file (``gce_auth_file``); without it the gcloud default is used."""


class GceSettings(ConfigModel):
    """A gce entry's own keys."""

    cloud: GceMachine | None = None
    """The machine to start; required (checked with the resource when the config loads, see `gce_problems`)."""


def gce_problems(settings: GceSettings, resource: str) -> list[Problem]:
    """What HTCondor's GCE grid manager needs: the machine, and a resource of three words."""
    problems = []
    if settings.cloud is None:
        problems.append(Problem("cloud", "required for gce entries (at least image and instance_type)"))
    if len(resource.split()) != 3:
        problems.append(
            Problem(
                "resource",
                "a gce resource is '<service URL> <project> <zone>', e.g. "
                "'https://www.googleapis.com/compute/v1 my-project us-central1-a'",
            )
        )
    return problems


PLUGIN = GridTypePlugin(
    name="gce",
    settings=GceSettings,
    template="gce.sub.j2",
    checks=gce_problems,
    transfers_files=False,
    secret_user_data=gce_secret_user_data,
)

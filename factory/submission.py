"""What a `Submit` needs before it reaches the schedd: the pilot's token stored, its log folder, its description.

`decide` has already chosen the CE (`Submit.target`) and the clusters; this
module only renders, and keeps the token store to what queued pilots and
accepted requests still name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import classad2

from updraft import pilot_ad
from updraft.factory import gridtypes
from updraft.factory.config import FactoryConfig
from updraft.factory.credentials import CredentialStore
from updraft.factory.model import FactoryPlan, Submit
from updraft.factory.observe import FactoryView
from updraft.factory.pilot_args import glidein_arguments, glidein_environment
from updraft.factory.policy import member_entry
from updraft.factory.render import PilotSpec, render_submit
from updraft.factory.slotad import pilot_domains
from updraft.staging import StagingRelease

log = logging.getLogger(__name__)


def describe(config: FactoryConfig, action: Submit, releases: Mapping[str, StagingRelease]) -> dict[str, str]:
    """The submit description for the action's CE; RenderError or CredentialStoreError if it cannot be made."""
    entry = member_entry(config, action.entry, action.target)
    release = releases.get(action.target)
    secret_user_data = gridtypes.plugin(entry.grid_type).secret_user_data
    token_file = user_data_file = None
    if action.credential is not None and secret_user_data is not None:
        text = secret_user_data(action.credential.token)
        user_data_file = CredentialStore.of(config).save_user_data(action.frontend, action.credential, text)
    elif action.credential is not None:
        token_file = CredentialStore.of(config).save(action.frontend, action.credential)
    spec = PilotSpec(
        frontend=action.frontend,
        group=action.group,
        security_class=action.security_class,
        credential_id=action.credential.credential_id if action.credential else f"{action.frontend}.{action.group}",
        pilot_token_file=token_file,
        user_data_file=user_data_file,
        vm_manifest=(release.manifest_url, release.manifest_sha256) if release is not None else None,
        executable=config.pilot.executable,
        work_dir=log_dir(config, action.entry, action.frontend),
        arguments=glidein_arguments(
            entry,
            release,
            action.pilot,
            config.pilot.arguments,
            domains=pilot_domains(config.name, action.entry, entry),
        ),
        environment=glidein_environment(entry, action.pilot),
    )
    description = render_submit(config, action.entry, entry, spec)
    description[f"+{pilot_ad.MEMBER}"] = classad2.quote(action.target)
    return description


def log_dir(config: FactoryConfig, entry: str, frontend: str) -> Path:
    """Pilot logs per entry and frontend. A factory running as root submits as a
    token identity that is not root, so the pilot owner must be able to write here."""
    path = config.work_dir / "entries" / entry / frontend
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        path.chmod(0o1777)
    return path


def prune_credentials(config: FactoryConfig, plan: FactoryPlan, view: FactoryView) -> str | None:
    """Delete the pilot tokens that no queued pilot and no accepted request names any more."""
    needed = {(p.frontend, p.credential_id) for p in view.pilots or ()}
    needed |= {
        (d.request.frontend, d.request.credential.credential_id)
        for d in plan.decisions
        if d.request is not None and d.request.credential is not None
    }
    try:
        for path in CredentialStore.of(config).prune(needed):
            log.info("pilot token %s deleted: no queued pilot needs it", path.name)
    except OSError as err:
        return f"pilot tokens not pruned: {err}"
    return None

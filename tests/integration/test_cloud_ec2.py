"""Cloud pilots through the lab's EC2 API, judged by what the API itself says.

Layers: the lab's factory config with its `cloud` entry -> request ads in the
WMS collector, as the frontend publishes them (`test_factory.ask`), or the
real frontend -> `updraft factory once` as an operator runs it -> assertions
on the EC2 API (DescribeInstances, the instance's user data: `updraft.lab.cloud`),
not only on the factory schedd's queue. The API (moto) boots nothing; the
user data's round trip (booted by the VM bootstrap in the lab's root, a pilot
that runs jobs and retires, the instance terminated) is tested where the
demo's workload runs it through the real frontend: test_end_to_end.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import yaml

from updraft.condor import Collector
from updraft.frontend.config import FrontendConfig
from updraft.lab import cloud
from updraft.lab.labconfig import CLOUD_KEY_NAME, factory_config, write_component_configs
from updraft.lab.topology import FRONTEND, Topology
from updraft.protocol import RemoveMode
from updraft.tokens import PILOT_AUTHZ, read_claims

from .jobs import wait_for
from .roles import invalidate_as
from .test_factory import ask, updraft

PILOTS = 'UpdraftFactory =?= "lab-factory" && UpdraftEntry =?= "cloud"'
PROJECTION = ["ClusterId", "ProcId", "JobStatus", "GridJobId", "EC2InstanceName", "EC2UserData", "EC2UserDataFile"]
TOKEN_PAIR = "UPDRAFT_PILOT_TOKEN_VALUE"


@pytest.fixture(scope="module")
def factory_yaml(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> Path:
    write_component_configs(lab)
    config = factory_config(lab)
    config["entries"]["cloud"]["glidein"] |= {"max_idle_seconds": 600}  # no pilot leaves unasked while counted
    path = tmp_path_factory.mktemp("cloud") / "factory.yaml"
    path.write_text(yaml.safe_dump(config))
    updraft("factory", "check-config", "--config", str(path))
    return path


def pilots(lab: Topology) -> list[dict]:
    return Collector(lab.wms.collector).schedd(lab.factory.schedd).query(PILOTS, PROJECTION)


def live_instances(lab: Topology) -> list[cloud.Instance]:
    return [i for i in cloud.instances(lab, UpdraftFactory="lab-factory") if cloud.state(i) != "terminated"]


def once(factory_yaml: Path):
    return updraft("factory", "once", "--config", str(factory_yaml), check=False)


@pytest.fixture(autouse=True)
def nothing_left(lab: Topology) -> Iterator[None]:
    """Each test ends with no cloud pilot, no request and no live instance of the lab factory."""
    yield
    invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", "true")
    Collector(lab.wms.collector).schedd(lab.factory.schedd).remove(PILOTS, "cloud test done")
    wait_for(lambda: not pilots(lab), 120, interval=2)
    cloud.terminate(lab, [i["InstanceId"] for i in live_instances(lab)])


def started_instance(lab: Topology) -> tuple[dict, cloud.Instance] | None:
    """The cloud pilot's job ad and its instance, once the API runs it and the job ad names it."""
    ads = [a for a in pilots(lab) if a.get("EC2InstanceName")]
    found = {i["InstanceId"]: i for i in live_instances(lab) if cloud.state(i) == "running"}
    return (ads[0], found[ads[0]["EC2InstanceName"]]) if ads and ads[0]["EC2InstanceName"] in found else None


def assert_the_instance_is_the_entrys(lab: Topology, ad: dict, instance: cloud.Instance) -> None:
    entry = factory_config(lab)["entries"]["cloud"]["cloud"]
    assert (instance["ImageId"], instance["InstanceType"], instance["KeyName"]) == (
        entry["image"],
        entry["instance_type"],
        CLOUD_KEY_NAME,
    )
    assert [group["GroupName"] for group in instance["SecurityGroups"]] == ["default"]
    assert cloud.tags(instance) == {
        "UpdraftFactory": "lab-factory",
        "UpdraftEntry": "cloud",
        "UpdraftPilot": f"{ad['ClusterId']}.{ad['ProcId']}",
        "Project": "updraft-lab",
    }


def user_data_settings(lab: Topology, ad: dict, instance: cloud.Instance) -> dict[str, str]:
    """The instance's user data: the settings from the job ad, then the token from the 0600 file."""
    data = cloud.user_data(lab, instance["InstanceId"]).decode()
    assert data.startswith(ad["EC2UserData"]) and TOKEN_PAIR not in ad["EC2UserData"]
    settings = dict(parse_qsl(data, strict_parsing=True))
    assert settings["UPDRAFT_JOB_ID"] == f"{ad['ClusterId']}.{ad['ProcId']}"
    assert settings["UPDRAFT_ENTRY"] == "cloud" and settings["GLIDEIN_Site"] == lab.cloud.glidein_site
    assert settings["UPDRAFT_VM_GLIDEIN"] == "glidein_startup.sh"
    assert settings["UPDRAFT_VM_MANIFEST_URL"].startswith(lab.staging_url)
    assert Path(ad["EC2UserDataFile"]).stat().st_mode & 0o077 == 0
    return settings


def assert_a_narrow_token_said_nowhere_else(lab: Topology, token: str, *said: str) -> None:
    claims = read_claims(token)
    assert claims.authz == PILOT_AUTHZ
    assert claims.expires_at is not None and claims.expires_at - time.time() <= 6 * 3600
    monitoring = lab.work_dir / "factory" / "monitoring"
    in_files = [p for p in monitoring.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert not any(token in text for text in said) and not in_files


def test_an_instance_is_what_its_entry_says_and_its_token_is_only_in_the_user_data(
    lab: Topology, lab_frontend: FrontendConfig, factory_yaml: Path, capsys: pytest.CaptureFixture
) -> None:
    ask(lab, lab_frontend, "cloud", idle=1, max_pilots=1)
    asked = time.monotonic()
    done = once(factory_yaml)
    assert "submitted 1," in done.stdout, done.stdout + done.stderr
    ad, instance = wait_for(lambda: started_instance(lab), 90, interval=1)
    running_after = time.monotonic() - asked
    assert_the_instance_is_the_entrys(lab, ad, instance)
    settings = user_data_settings(lab, ad, instance)
    assert_a_narrow_token_said_nowhere_else(lab, settings[TOKEN_PAIR], done.stdout, done.stderr, repr(ad))

    # The operator sees the instance id where a batch pilot shows its batch job id.
    shown = updraft("factory", "status", "--config", str(factory_yaml), "--pilots").stdout
    assert instance["InstanceId"] in shown, shown

    # Removing the pilot terminates the instance.
    ask(lab, lab_frontend, "cloud", idle=0, max_pilots=1, remove=RemoveMode.ALL, remove_max=1)
    removed_at = time.monotonic()
    assert "removed 1," in once(factory_yaml).stdout
    wait_for(lambda: cloud.state(cloud.instances(lab, UpdraftPilot=settings["UPDRAFT_JOB_ID"])[0]) == "terminated", 60)
    terminated_after = time.monotonic() - removed_at
    with capsys.disabled():
        print(
            f"\ncloud: request -> instance running {running_after:.1f} s, "
            f"removal -> instance terminated {terminated_after:.1f} s"
        )

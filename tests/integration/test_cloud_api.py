"""The factory's EC2 port against the real EC2 API: the lab's (moto in the lab's root, lab/ec2_api.py),
with instances the test starts through boto3 itself, tagged for a factory of the test's own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from updraft.factory.cloud import TAG_ENTRY, TAG_FACTORY, TAG_PILOT, CloudCredentials
from updraft.factory.cloudports import Ec2Api
from updraft.factory.config import load_factory_config
from updraft.factory.ports import FactoryPorts
from updraft.factory.service import run_cycle
from updraft.fakes import FakeCollector, FakeSchedd
from updraft.lab.topology import Topology

from ..unit.conftest import ConfigTree

FACTORY = "cloud-test-factory"
"""Not the lab factory: the instances these tests start are nobody else's."""


@pytest.fixture(scope="module")
def endpoint(lab: Topology) -> str:
    """The lab's EC2 API (moto in the lab's root, lab/ec2_api.py): ``http://ec2.us-east-1.localhost:PORT/``."""
    return lab.cloud.endpoint


@pytest.fixture
def credentials(tmp_path: Path) -> CloudCredentials:
    (tmp_path / "access").write_text("AKIDCLOUDTRACKTEST\n")
    (tmp_path / "secret").write_text("cloudtrack-secret-not-shown\n")
    return CloudCredentials(tmp_path / "access", tmp_path / "secret")


def ec2(endpoint: str) -> Any:
    port = endpoint.rsplit(":", 1)[1].strip("/")
    return boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}/",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def start(client: Any, tags: dict[str, str], instance_type: str = "t3.micro") -> str:
    image = client.describe_images()["Images"][0]["ImageId"]
    answer = client.run_instances(
        ImageId=image,
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]},
        ],
    )
    return str(answer["Instances"][0]["InstanceId"])


def state_of(client: Any, instance_id: str) -> str:
    reservations = client.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


def test_instances_lists_only_the_factorys_with_their_tags_and_terminate_ends_them(
    endpoint: str, credentials: CloudCredentials
) -> None:
    client = ec2(endpoint)
    ours = start(client, {TAG_FACTORY: FACTORY, TAG_ENTRY: "cloud", TAG_PILOT: "5.0"}, "m5.large")
    stopped = start(client, {TAG_FACTORY: FACTORY, TAG_ENTRY: "cloud", TAG_PILOT: "5.1"})
    client.stop_instances(InstanceIds=[stopped])
    gone = start(client, {TAG_FACTORY: FACTORY, TAG_ENTRY: "cloud", TAG_PILOT: "5.2"})
    client.terminate_instances(InstanceIds=[gone])
    theirs = start(client, {TAG_FACTORY: "someone-else", TAG_ENTRY: "cloud"})
    api = Ec2Api(timeout=20.0)

    found = {i.id: i for i in api.instances(endpoint, credentials, FACTORY)}

    assert set(found) == {ours, stopped}  # neither a terminated instance nor another factory's
    mine = found[ours]
    assert (mine.state, mine.instance_type, mine.tags[TAG_PILOT], mine.tags[TAG_ENTRY]) == (
        "running",
        "m5.large",
        "5.0",
        "cloud",
    )
    assert mine.image.startswith("ami-")
    assert abs(mine.launched - time.time()) < 120
    assert found[stopped].state == "stopped"

    api.terminate(endpoint, credentials, [ours, stopped])

    assert {state_of(client, ours), state_of(client, stopped)} <= {"shutting-down", "terminated"}
    assert ours not in {i.id for i in api.instances(endpoint, credentials, FACTORY) if i.state != "shutting-down"}
    assert state_of(client, theirs) == "running"


CONFIG = """\
    name: {factory}
    wms_collector: 127.0.0.1:29619
    schedd: factory@lab
    work_dir: {work}
    pilot:
      executable: /bin/true
    entries:
      cloud:
        grid_type: ec2
        resource: {endpoint}
        cloud:
          image: ami-1
          instance_type: t3.micro
          access_key_file: {access}
          secret_key_file: {secret}
          unknown_instance_grace_seconds: 0
          terminate_unknown_after_seconds: 0
"""


def test_a_cycle_reports_and_terminates_an_instance_no_pilot_owns(
    endpoint: str, credentials: CloudCredentials, tmp_path: Path
) -> None:
    client = ec2(endpoint)
    factory = f"{FACTORY}-cycle"
    claimed = start(client, {TAG_FACTORY: factory, TAG_ENTRY: "cloud", TAG_PILOT: "9.0"})
    lost = start(client, {TAG_FACTORY: factory, TAG_ENTRY: "cloud", TAG_PILOT: "9.1"})
    text = CONFIG.format(
        factory=factory,
        work=tmp_path / "work",
        endpoint=endpoint,
        access=credentials.access_key_file,
        secret=credentials.secret_key_file,
    )
    config = load_factory_config(ConfigTree(tmp_path / "etc").factory(main=text)).config
    job = {
        "ClusterId": 9,
        "ProcId": 0,
        "JobStatus": 2,
        "QDate": int(time.time()),
        "EnteredCurrentStatus": int(time.time()),
        "UpdraftPilot": True,
        "UpdraftFactory": factory,
        "UpdraftEntry": "cloud",
        "UpdraftFrontend": "vo",
        "UpdraftGroup": "main",
        "EC2InstanceName": claimed,
    }
    schedd = FakeSchedd(config.schedd, jobs=[job], now=time.time())
    wms = FakeCollector(config.wms_collector, schedds={config.schedd: schedd})
    ports = FactoryPorts.through(wms, config.schedd, Ec2Api(config.query_timeout_seconds))

    result = run_cycle(config, 1, time.time() + 1, releases={}, ports=ports)

    unknown = [p for p in result.problems if "belongs to no pilot" in p]
    assert len(unknown) == 1
    assert unknown[0].startswith(f"entry cloud: instance {lost} (running since ")
    assert "pilot tag 9.1" in unknown[0]
    assert state_of(client, lost) in ("shutting-down", "terminated")
    assert state_of(client, claimed) == "running"
    assert not any("cloudtrack-secret" in p or "AKIDCLOUDTRACK" in p for p in result.problems)

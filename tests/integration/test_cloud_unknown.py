"""Cloud money in the lab: an instance tagged as the lab factory's, which no pilot owns, is reported by
`updraft factory once` and `status` and counted in monitoring, then terminated once the entry says so.

The instance is started straight through the lab's EC2 API (as a pilot whose job was lost would have
left it); the factory is the lab's own, with its `cloud` entry, run as an operator runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from updraft.lab import cloud
from updraft.lab.labconfig import factory_config, write_component_configs
from updraft.lab.topology import Topology

from .jobs import wait_for
from .test_factory import updraft


def factory_yaml(lab: Topology, folder: Path, **cloud_keys: int) -> Path:
    config = factory_config(lab)
    config["entries"]["cloud"]["cloud"] |= cloud_keys
    path = folder / "factory.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_instance_no_pilot_owns_is_reported_then_terminated(
    lab: Topology, tmp_path_factory: pytest.TempPathFactory
) -> None:
    write_component_configs(lab)
    folder = tmp_path_factory.mktemp("cloud-unknown")
    machine = factory_config(lab)["entries"]["cloud"]["cloud"]
    tags = {"UpdraftFactory": "lab-factory", "UpdraftEntry": "cloud", "UpdraftPilot": "999.0"}
    answer = cloud.client(lab).run_instances(
        ImageId=machine["image"],
        InstanceType=machine["instance_type"],
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    stray = answer["Instances"][0]["InstanceId"]
    try:
        report_only = factory_yaml(lab, folder, unknown_instance_grace_seconds=0)
        done = updraft("factory", "once", "--config", str(report_only))
        expected = f"problem: entry cloud: instance {stray} (running since "
        assert expected in done.stderr, done.stderr
        assert "pilot tag 999.0) belongs to no pilot of this factory" in done.stderr
        assert cloud.state(cloud.instances(lab, UpdraftPilot="999.0")[0]) == "running"  # reported, not touched

        shown = updraft("factory", "status", "--config", str(report_only)).stdout
        assert "1 belong to no pilot" in shown and stray in shown, shown
        monitoring = lab.work_dir / "factory" / "monitoring"
        assert any(monitoring.rglob("updraft_factory_cloud_unknown_instances*")), sorted(monitoring.rglob("*"))[:40]

        terminating = factory_yaml(lab, folder, unknown_instance_grace_seconds=0, terminate_unknown_after_seconds=0)
        done = updraft("factory", "once", "--config", str(terminating))
        assert expected in done.stderr, done.stderr
        wait_for(lambda: cloud.state(cloud.instances(lab, UpdraftPilot="999.0")[0]) == "terminated", 30)
    finally:
        cloud.terminate(lab, [stray])

"""The lab's cloud provider: an EC2 API endpoint that the factory's grid manager really talks to.

The `cloud` instance's condor_master runs lab/ec2_api.py (moto's server,
answering as AWS does) from the lab's root, so `lab up/down`, `lab stop
cloud` and the leftover sweep treat it like any lab daemon. moto keeps its
state in memory: a restart of the program forgets every instance.

The functions below read the API the way a test or the demo checks the
factory's work: DescribeInstances, the instance's user data, termination.
They connect to 127.0.0.1 directly, because the host's resolver does not
know the ``*.localhost`` name the grid manager uses, and sign for the
region that name carries.
"""

from __future__ import annotations

import base64
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from updraft.atomicwrite import write_atomically
from updraft.errors import LabError
from updraft.lab.runtime import Runtime
from updraft.lab.topology import FACTORY, LOOPBACK, Program, Topology

Instance = Mapping[str, Any]
"""One instance as DescribeInstances returns it (boto3's dict)."""

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def programs(topology: Topology) -> list[Program]:
    """What the cloud instance's master runs: the EC2 API on loopback, in the foreground."""
    args = f"{topology.ec2_api_script} --host {LOOPBACK} --port {topology.cloud.api_port}"
    return [Program("EC2API", "/usr/bin/python3", args)]


def write_credentials(topology: Topology, runtime: Runtime) -> None:
    """An access key id and secret for the lab's account (moto accepts any), once per lab folder,
    readable by the factory user alone: its grid manager reads them as the pilots' owner."""
    owner = runtime.ids(FACTORY.user)
    access, secret = topology.ec2_credentials
    access.parent.mkdir(parents=True, exist_ok=True)
    if not access.exists():
        write_atomically(access, f"AKIA{secrets.token_hex(8).upper()}\n".encode(), 0o600, owner)
    if not secret.exists():
        write_atomically(secret, (secrets.token_urlsafe(30) + "\n").encode(), 0o600, owner)


def answers(topology: Topology, timeout: float = 2.0) -> bool:
    """moto's own status page answers: the API is up."""
    url = f"http://{LOOPBACK}:{topology.cloud.api_port}/moto-api/"
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def client(topology: Topology, timeout: float = 10.0) -> Any:
    """A boto3 EC2 client for the lab's endpoint (with the lab's keys: any would do)."""
    import boto3
    from botocore.config import Config

    access, secret = topology.ec2_credentials
    return boto3.client(
        "ec2",
        endpoint_url=f"http://{LOOPBACK}:{topology.cloud.api_port}",
        region_name=topology.cloud.region,
        aws_access_key_id=access.read_text().strip(),
        aws_secret_access_key=secret.read_text().strip(),
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1}),
    )


def instances(topology: Topology, **filters: str) -> list[Instance]:
    """Every instance the API knows, in any state; `filters` are tag filters (``UpdraftEntry="cloud"``)."""
    api_filters = [{"Name": f"tag:{name}", "Values": [value]} for name, value in filters.items()]
    reservations = client(topology).describe_instances(Filters=api_filters)["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def launched_since(topology: Topology, since: float, **filters: str) -> list[Instance]:
    """The instances launched at or after `since` (epoch seconds): one run's, in a lab that keeps older ones."""
    return [i for i in instances(topology, **filters) if i["LaunchTime"].timestamp() >= since - 1]


def tags(instance: Instance) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", ())}


def state(instance: Instance) -> str:
    return str(instance["State"]["Name"])


def user_data(topology: Topology, instance_id: str) -> bytes:
    """The user data the instance was started with, as a VM would read it from its metadata service."""
    answer = client(topology).describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    value = answer.get("UserData", {}).get("Value")
    if value is None:
        raise LabError(f"instance {instance_id} was started without user data: no pilot can boot from it")
    return base64.b64decode(value)


def terminate(topology: Topology, instance_ids: Sequence[str]) -> None:
    """What a VM's shutdown does to an instance started with InstanceInitiatedShutdownBehavior=terminate."""
    if instance_ids:
        client(topology).terminate_instances(InstanceIds=list(instance_ids))


def describe(topology: Topology, known: Sequence[Instance]) -> list[str]:
    """One line for `lab status` / the demo: the endpoint and its instances by state."""
    by_state: dict[str, int] = {}
    for instance in known:
        by_state[state(instance)] = by_state.get(state(instance), 0) + 1
    counts = ", ".join(f"{count} {name}" for name, count in sorted(by_state.items())) or "no instances"
    return [f"cloud: EC2 API {topology.cloud.endpoint} ({counts})"]

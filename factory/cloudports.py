"""The EC2 API as a port: list the instances tagged with a factory's name, terminate instances.

One `Ec2Api` serves one cycle. Every call runs in a forked child
(`updraft.deadline.call_in_child`) killed when the deadline passes, so a
server that accepts the connection and never answers costs one deadline,
whatever boto3's own timeouts and retries would do with it; boto3 is also
told to give up on its own (connect and read timeouts, one retry at most).
An endpoint that missed its deadline is not asked again in the same cycle.

Credentials are read from the entry's files when a call is made, in the
child, and never kept, logged or put into an error: an error names the
file. Every failure is a `CloudError`; callers treat the account as
unknown for the cycle, never as having no instances.

Endpoint rule. HTCondor's ec2_gahp signs its requests with the region it
reads from the endpoint's host name (second label: ``ec2.us-east-1.amazonaws.com``),
so the factory signs with the same region. A host under ``.localhost``
(RFC 6761; the lab's EC2 API is ``http://ec2.us-east-1.localhost:PORT/``) is
loopback: the factory connects to 127.0.0.1 on the same port, since this
host's resolver does not map ``*.localhost`` names. Other names are used as
they are.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from updraft import secretfiles
from updraft.deadline import ChildFailed, DeadlineExceeded, call_in_child
from updraft.errors import CloudError
from updraft.factory.cloud import LISTED_STATES, TAG_FACTORY, CloudCredentials, CloudInstance

T = TypeVar("T")

DEFAULT_REGION = "us-east-1"
"""Signed with when the host name has no region label (an EC2-compatible service on a short name)."""
MAX_CONNECT_SECONDS = 10.0


class CloudPort(Protocol):
    """An EC2 API: the factory's instances, and terminating some of them. Failures raise CloudError."""

    def instances(self, endpoint: str, credentials: CloudCredentials, factory: str) -> list[CloudInstance]: ...

    def terminate(self, endpoint: str, credentials: CloudCredentials, ids: Sequence[str]) -> None: ...


def connection(endpoint: str) -> tuple[str, str]:
    """(the URL to connect to, the region to sign with) for an entry's EC2 endpoint (module docstring)."""
    parts = urlsplit(endpoint)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise CloudError(f"EC2 endpoint {endpoint!r} is not an http(s) URL with a host name")
    labels = host.split(".")
    region = labels[1] if len(labels) >= 3 and labels[1] else DEFAULT_REGION
    if host == "localhost" or host.endswith(".localhost"):
        netloc = "127.0.0.1" if parts.port is None else f"127.0.0.1:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")), region
    return endpoint, region


class Ec2Api:
    """The real EC2 API through boto3, every call under `timeout` seconds (one object per cycle)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._silent: dict[str, str] = {}

    def instances(self, endpoint: str, credentials: CloudCredentials, factory: str) -> list[CloudInstance]:
        return self._call(
            endpoint, "listing instances", lambda: _describe(endpoint, credentials, factory, self.timeout)
        )

    def terminate(self, endpoint: str, credentials: CloudCredentials, ids: Sequence[str]) -> None:
        wanted = tuple(ids)
        if wanted:
            self._call(
                endpoint, "terminating instances", lambda: _terminate(endpoint, credentials, wanted, self.timeout)
            )

    def _call(self, endpoint: str, what: str, fn: Callable[[], T]) -> T:
        with self._lock:
            silent = self._silent.get(endpoint)
        if silent is not None:
            raise CloudError(silent)
        try:
            return call_in_child(fn, self.timeout)
        except DeadlineExceeded:
            reason = f"EC2 API {endpoint} did not answer within {self.timeout:g} s ({what})"
            with self._lock:
                self._silent[endpoint] = reason
            raise CloudError(reason) from None
        except ChildFailed as err:
            raise CloudError(f"EC2 API {endpoint}: {what} failed: {err}") from None


def _client(endpoint: str, credentials: CloudCredentials, timeout: float) -> Any:
    url, region = connection(endpoint)
    access, secret = _read_key(credentials.access_key_file), _read_key(credentials.secret_key_file)
    config = Config(
        connect_timeout=min(timeout, MAX_CONNECT_SECONDS),
        read_timeout=timeout,
        retries={"total_max_attempts": 2, "mode": "standard"},
    )
    return boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=config,
    )


def _read_key(path: Path) -> str:
    """One key from its file (`updraft.secretfiles.read_secret`), which must be one word;
    a CloudError naming the file and what was expected, never its content, otherwise."""
    try:
        value = secretfiles.read_secret(path)
    except ValueError as err:
        raise CloudError(f"EC2 key file: {err} (expected one key)") from None
    if any(c.isspace() for c in value):
        raise CloudError(f"EC2 key file {path} holds more than one word (expected one key)")
    return value


def _describe(endpoint: str, credentials: CloudCredentials, factory: str, timeout: float) -> list[CloudInstance]:
    """DescribeInstances for the factory's tag and the listed states, every page (runs in the child)."""
    client = _client(endpoint, credentials, timeout)
    filters = [
        {"Name": f"tag:{TAG_FACTORY}", "Values": [factory]},
        {"Name": "instance-state-name", "Values": list(LISTED_STATES)},
    ]
    found: list[CloudInstance] = []
    try:
        for page in client.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page.get("Reservations", ()):
                found.extend(_instance(item) for item in reservation.get("Instances", ()))
    except (BotoCoreError, ClientError) as err:
        raise CloudError(f"EC2 API {endpoint}: listing instances failed: {_said(err)}") from None
    return found


def _terminate(endpoint: str, credentials: CloudCredentials, ids: tuple[str, ...], timeout: float) -> None:
    client = _client(endpoint, credentials, timeout)
    try:
        client.terminate_instances(InstanceIds=list(ids))
    except (BotoCoreError, ClientError) as err:
        raise CloudError(f"EC2 API {endpoint}: terminating {', '.join(ids)} failed: {_said(err)}") from None


def _said(err: BotoCoreError | ClientError) -> str:
    """What the API or the client said, on one line: an error code and message, never a request's headers."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    return " ".join(str(err).split())


def _instance(item: dict[str, Any]) -> CloudInstance:
    launched = item.get("LaunchTime")
    return CloudInstance(
        id=str(item.get("InstanceId", "")),
        state=str(item.get("State", {}).get("Name", "")),
        launched=launched.timestamp() if isinstance(launched, datetime) else 0.0,
        tags={str(t.get("Key", "")): str(t.get("Value", "")) for t in item.get("Tags", ())},
        image=str(item.get("ImageId", "")),
        instance_type=str(item.get("InstanceType", "")),
    )


class FakeCloud:
    """EC2 APIs in memory, by endpoint (for tests): instances to list, endpoints that fail, calls made."""

    def __init__(self) -> None:
        self.instances_at: dict[str, list[CloudInstance]] = {}
        self.unreachable: set[str] = set()
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        """(method, endpoint, ids or (factory,))."""

    def add(self, endpoint: str, *instances: CloudInstance) -> None:
        self.instances_at.setdefault(endpoint, []).extend(instances)

    def instances(self, endpoint: str, credentials: CloudCredentials, factory: str) -> list[CloudInstance]:
        self.calls.append(("instances", endpoint, (factory,)))
        self._reach(endpoint)
        return [
            i
            for i in self.instances_at.get(endpoint, [])
            if i.tags.get(TAG_FACTORY) == factory and i.state in LISTED_STATES
        ]

    def terminate(self, endpoint: str, credentials: CloudCredentials, ids: Sequence[str]) -> None:
        self.calls.append(("terminate", endpoint, tuple(ids)))
        self._reach(endpoint)
        wanted = set(ids)
        self.instances_at[endpoint] = [
            _terminated(i) if i.id in wanted else i for i in self.instances_at.get(endpoint, [])
        ]

    def _reach(self, endpoint: str) -> None:
        if endpoint in self.unreachable:
            raise CloudError(f"EC2 API {endpoint} did not answer within 1 s (fake)")


def _terminated(instance: CloudInstance) -> CloudInstance:
    return dataclasses.replace(instance, state="terminated")

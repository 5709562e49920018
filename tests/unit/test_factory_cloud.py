"""Cloud instances no pilot owns: the decision (tables), observe with the fake EC2 API, the port's
deadline against a server that accepts and never answers, and what monitoring and status show."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from updraft.cli import main
from updraft.errors import CloudError
from updraft.factory.cloud import (
    TAG_ENTRY,
    TAG_FACTORY,
    TAG_PILOT,
    AccountRead,
    CloudAccount,
    CloudCredentials,
    CloudInstance,
    CloudPolicy,
    CloudView,
    Terminate,
    decide_cloud,
    unknown_lines,
)
from updraft.factory.cloudports import Ec2Api, FakeCloud, connection
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.observe import observe, read_cloud
from updraft.factory.ports import FactoryPorts
from updraft.factory.service import run_cycle
from updraft.factory.snapshot import cloud_rows
from updraft.factory.status import cloud_lines
from updraft.fakes import FakeCollector, FakeSchedd
from updraft.monitoring import metrics
from updraft.monitoring.snapshot import FactorySnapshot

from .conftest import ConfigTree

NOW = 1_800_000_000.0
FACTORY = "fac"
ENDPOINT = "http://ec2.us-east-1.localhost:30999/"
ACCOUNT = CloudAccount(ENDPOINT, CloudCredentials(Path("/keys/access"), Path("/keys/secret")))
OTHER = CloudAccount("https://ec2.eu-west-1.amazonaws.com/", CloudCredentials(Path("/k/a"), Path("/k/s")))


def vm(
    instance_id: str, age: float, state: str = "running", entry: str = "cloud", factory: str = FACTORY, pilot: str = ""
) -> CloudInstance:
    tags = {TAG_FACTORY: factory, TAG_ENTRY: entry}
    if pilot:
        tags[TAG_PILOT] = pilot
    return CloudInstance(instance_id, state, NOW - age, tags, "ami-1", "t3.micro")


def view(*instances: CloudInstance) -> CloudView:
    return CloudView((AccountRead(ACCOUNT, ("cloud",), tuple(instances)),))


REPORT_ONLY = {"cloud": CloudPolicy(grace_seconds=300)}
TERMINATING = {"cloud": CloudPolicy(grace_seconds=300, terminate_after_seconds=3600)}


# --------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance", "claims", "policies", "unknown", "terminated"),
    [
        pytest.param(vm("i-1", 900), {"i-1": "3.0"}, TERMINATING, [], [], id="claimed by a pilot"),
        pytest.param(vm("i-1", 299), {}, TERMINATING, [], [], id="inside the grace"),
        pytest.param(vm("i-1", 300), {}, REPORT_ONLY, ["i-1"], [], id="past the grace, report only"),
        pytest.param(vm("i-1", 3599), {}, TERMINATING, ["i-1"], [], id="unknown, not yet terminate age"),
        pytest.param(vm("i-1", 3600), {}, TERMINATING, ["i-1"], ["i-1"], id="unknown past terminate age"),
        pytest.param(vm("i-1", 9000, "stopped"), {}, TERMINATING, ["i-1"], ["i-1"], id="stopped costs too"),
        pytest.param(vm("i-1", 9000, "shutting-down"), {}, TERMINATING, [], [], id="already leaving"),
        pytest.param(vm("i-1", 9000, factory="other"), {}, TERMINATING, [], [], id="another factory's"),
        pytest.param(vm("i-1", 9000, entry="gone"), {}, TERMINATING, ["i-1"], [], id="unconfigured entry: report"),
        pytest.param(vm("i-1", 9000), {"i-2": "3.0"}, TERMINATING, ["i-1"], ["i-1"], id="pilot claims another"),
    ],
)
def test_unknown_instances(
    instance: CloudInstance, claims: dict[str, str], policies: dict[str, CloudPolicy], unknown: list[str], terminated
) -> None:
    plan = decide_cloud(FACTORY, view(instance), claims, policies, NOW)
    assert [u.instance.id for u in plan.unknown] == unknown
    assert [i for action in plan.actions for i in action.ids] == terminated
    assert all(action.account == ACCOUNT for action in plan.actions)


def test_grace_is_the_entrys_own() -> None:
    policies = {"cloud": CloudPolicy(grace_seconds=30)}
    plan = decide_cloud(FACTORY, view(vm("i-1", 60)), {}, policies, NOW)
    assert [u.instance.id for u in plan.unknown] == ["i-1"]
    assert "running for 60 s, no queued pilot names it (grace 30 s)" in plan.unknown[0].why


def test_an_account_not_listed_decides_nothing() -> None:
    unread = CloudView((AccountRead(ACCOUNT, ("cloud",), None, "EC2 API silent"),))
    assert decide_cloud(FACTORY, unread, {}, TERMINATING, NOW).decisions == ()


def test_counts_by_entry_and_state_and_each_instance_once() -> None:
    both = CloudView(
        (
            AccountRead(ACCOUNT, ("cloud",), (vm("i-1", 10), vm("i-2", 900, "stopped"), vm("i-3", 900, entry="gone"))),
            AccountRead(OTHER, ("cloud2",), (vm("i-1", 10), vm("i-4", 900, entry="cloud2"))),
        )
    )
    policies = {**TERMINATING, "cloud2": CloudPolicy()}
    plan = decide_cloud(FACTORY, both, {"i-4": "7.0"}, policies, NOW)
    assert [(d.entry, dict(d.states), len(d.unknown)) for d in plan.decisions] == [
        ("cloud", {"running": 1, "stopped": 1}, 1),
        ("cloud2", {"running": 1}, 0),
        (None, {"running": 1}, 1),
    ]


def test_terminations_are_grouped_by_account_with_a_reason_and_a_record() -> None:
    plan = decide_cloud(FACTORY, view(vm("i-1", 4000), vm("i-2", 5000), vm("i-3", 100)), {}, TERMINATING, NOW)
    assert plan.actions == (Terminate(ACCOUNT, ("i-2", "i-1"), "unknown to this factory for more than 3600 s"),)
    steps = plan.decisions[0].steps
    assert [(s.name, s.value) for s in steps] == [("unknown instances", 2)]
    assert "i-2: running for 5000 s" in steps[0].note


def test_report_only_records_the_unset_key_as_the_bound() -> None:
    plan = decide_cloud(FACTORY, view(vm("i-1", 4000)), {}, REPORT_ONLY, NOW)
    assert plan.actions == ()
    assert [(s.name, s.value, s.note) for s in plan.decisions[0].steps][-1] == (
        "terminate",
        0,
        "cloud.terminate_unknown_after_seconds: not set: report only",
    )
    assert plan.decisions[0].bound_by == ("cloud.terminate_unknown_after_seconds",)


def test_instances_of_no_configured_entry_are_never_terminated_and_say_why() -> None:
    plan = decide_cloud(FACTORY, view(vm("i-1", 9000, entry="gone")), {}, TERMINATING, NOW)
    assert plan.actions == ()
    assert [d.entry for d in plan.decisions] == ["cloud", None]  # its own entry listed, with nothing of its own
    assert plan.decisions[1].notes == ("no entry tag of a configured entry: reported, never terminated",)


# --------------------------------------------------------------------------
# What an operator reads
# --------------------------------------------------------------------------


def test_problem_lines_name_the_instance_its_state_and_its_pilot_tag() -> None:
    launched = time.mktime(time.strptime("2026-12-06 03:10", "%Y-%m-%d %H:%M")) - time.timezone
    tags = {TAG_FACTORY: FACTORY, TAG_ENTRY: "cloud", TAG_PILOT: "12.0"}
    instance = CloudInstance("i-0abc", "running", launched, tags)
    stranger = CloudInstance("i-0def", "stopped", launched, {TAG_FACTORY: FACTORY, TAG_ENTRY: "old"})
    plan = decide_cloud(FACTORY, view(instance, stranger), {}, REPORT_ONLY, launched + 3600)
    assert unknown_lines(plan) == [
        "entry cloud: instance i-0abc (running since 2026-12-06 03:10 UTC, pilot tag 12.0) "
        "belongs to no pilot of this factory",
        "factory: instance i-0def (stopped since 2026-12-06 03:10 UTC, entry tag 'old', no pilot tag) "
        "belongs to no configured entry of this factory",
    ]


def test_a_flood_of_unknown_instances_is_one_line() -> None:
    many = [vm(f"i-{n:03d}", 1000 + n, "stopped" if n % 4 == 0 else "running") for n in range(12)]
    lines = unknown_lines(decide_cloud(FACTORY, view(*many), {}, REPORT_ONLY, NOW))
    assert lines == [
        "entry cloud: 12 instances belong to no pilot of this factory (running 9, stopped 3); "
        "e.g. i-011, i-010, i-009, i-008, i-007 and 7 more"
    ]


def test_measurements_and_status() -> None:
    plan = decide_cloud(FACTORY, view(vm("i-1", 10), vm("i-2", 900, "stopped")), {}, REPORT_ONLY, NOW)
    snapshot = FactorySnapshot(FACTORY, NOW, 1, cloud=cloud_rows(plan))
    found = {
        (m.spec.name, tuple(v for _, v in m.tags)): m.values
        for m in metrics.measurements(snapshot)
        if m.spec in (metrics.FACTORY_CLOUD_INSTANCES, metrics.FACTORY_CLOUD_UNKNOWN)
    }
    assert found == {
        ("updraft_factory_cloud_instances", (FACTORY, "cloud", "running")): {"instances": 1.0},
        ("updraft_factory_cloud_instances", (FACTORY, "cloud", "stopped")): {"instances": 1.0},
        ("updraft_factory_cloud_unknown_instances", (FACTORY, "cloud")): {"unknown": 1.0},
    }
    assert cloud_lines(plan)[0] == "cloud            instances: running 1, stopped 1; 1 belong to no pilot"
    assert cloud_lines(plan)[1].startswith("entry cloud: instance i-2 (stopped since ")


# --------------------------------------------------------------------------
# Observe and a whole cycle, through the fake EC2 API
# --------------------------------------------------------------------------

CONFIG = """\
    name: fac
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
          access_key_file: {keys}/access
          secret_key_file: {keys}/secret
          unknown_instance_grace_seconds: 60
          terminate_unknown_after_seconds: 3600
      other:
        grid_type: ec2
        resource: https://ec2.eu-west-1.amazonaws.com/
        cloud:
          image: ami-2
          instance_type: t3.micro
          access_key_file: {keys}/access
          secret_key_file: {keys}/secret
"""


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "access").write_text("AKIDEXAMPLEACCESS\n")
    (folder / "secret").write_text("very-secret-value\n")
    return folder


@pytest.fixture
def config(tree: ConfigTree, tmp_path: Path, keys: Path) -> FactoryConfig:
    text = CONFIG.format(work=tmp_path / "work", endpoint=ENDPOINT, keys=keys)
    return load_factory_config(tree.factory(main=text)).config


def cloud_ports(config: FactoryConfig, cloud: FakeCloud, jobs: list[dict[str, Any]]) -> FactoryPorts:
    schedd = FakeSchedd(config.schedd, jobs=jobs, now=NOW)
    wms = FakeCollector(config.wms_collector, schedds={config.schedd: schedd})
    return FactoryPorts.through(wms, config.schedd, cloud)


def pilot_job(proc: int, instance: str, status: int = 2) -> dict[str, Any]:
    return {
        "ClusterId": 12,
        "ProcId": proc,
        "JobStatus": status,
        "QDate": int(NOW - 900),
        "EnteredCurrentStatus": int(NOW - 800),
        "UpdraftPilot": True,
        "UpdraftFactory": FACTORY,
        "UpdraftEntry": "cloud",
        "UpdraftFrontend": "vo",
        "UpdraftGroup": "main",
        "EC2InstanceName": instance,
    }


def test_an_unreachable_endpoint_is_unknown_not_zero(config: FactoryConfig) -> None:
    cloud = FakeCloud()
    cloud.add("https://ec2.eu-west-1.amazonaws.com/", vm("i-9", 9000, entry="other"))
    cloud.unreachable.add(ENDPOINT)
    read = read_cloud(cloud, config)
    by_entry = {r.entries: r for r in read.reads}
    assert by_entry[("cloud",)].instances is None
    assert by_entry[("other",)].instances == (vm("i-9", 9000, entry="other"),)
    assert read.problems == (
        f"entry cloud: instances at {ENDPOINT} unknown this cycle: EC2 API {ENDPOINT} did not answer within 1 s (fake)",
    )
    plan = decide_cloud(FACTORY, read, {}, {"cloud": CloudPolicy(0, 0), "other": CloudPolicy()}, NOW)
    assert [d.entry for d in plan.decisions] == ["other"]
    assert [a.ids for a in plan.actions] == []


def test_observe_projects_the_instance_name_and_claims_it(config: FactoryConfig) -> None:
    cloud = FakeCloud()
    cloud.add(ENDPOINT, vm("i-1", 900), vm("i-2", 900))
    ports = cloud_ports(config, cloud, [pilot_job(0, "i-1"), pilot_job(1, "i-2", status=3)])
    seen = observe(config, ports, NOW, with_history=False)
    assert seen.instance_claims == {"i-1": "12.0", "i-2": "12.1"}  # a removed pilot still names its instance
    assert [p.job_id for p in seen.pilots or ()] == ["12.0"]
    assert ("instances", ENDPOINT, (FACTORY,)) in cloud.calls


def test_a_cycle_reports_and_terminates_an_instance_no_pilot_owns(config: FactoryConfig) -> None:
    cloud = FakeCloud()
    cloud.add(ENDPOINT, vm("i-mine", 5000, pilot="12.0"), vm("i-lost", 5000, pilot="12.1"), vm("i-new", 30))
    ports = cloud_ports(config, cloud, [pilot_job(0, "i-mine")])
    result = run_cycle(config, 1, NOW, releases={}, ports=ports)
    assert any(
        p.startswith("entry cloud: instance i-lost (running since ") and "pilot tag 12.1" in p for p in result.problems
    )
    assert not any("i-mine" in p or "i-new" in p for p in result.problems)
    assert ("terminate", ENDPOINT, ("i-lost",)) in cloud.calls
    assert {i.id: i.state for i in cloud.instances_at[ENDPOINT]}["i-lost"] == "terminated"
    assert not any("very-secret" in p or "AKIDEXAMPLE" in p for p in result.problems)


def test_a_failed_termination_is_a_problem_and_the_cycle_goes_on(config: FactoryConfig) -> None:
    class Refusing(FakeCloud):
        def terminate(self, endpoint: str, credentials: CloudCredentials, ids: Any) -> None:
            raise CloudError(f"EC2 API {endpoint}: terminating failed: UnauthorizedOperation")

    cloud = Refusing()
    cloud.add(ENDPOINT, vm("i-lost", 5000))
    result = run_cycle(config, 1, NOW, releases={}, ports=cloud_ports(config, cloud, []))
    assert result.plan is not None
    assert f"instances i-lost not terminated: EC2 API {ENDPOINT}: terminating failed: UnauthorizedOperation" in (
        result.problems
    )


def test_status_and_plan_show_the_unknown_instance(
    config: FactoryConfig, tree: ConfigTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    cloud = FakeCloud()
    lost = CloudInstance("i-lost", "running", now - 5000, {TAG_FACTORY: FACTORY, TAG_ENTRY: "cloud", TAG_PILOT: "12.1"})
    cloud.add(ENDPOINT, lost)
    monkeypatch.setattr("updraft.factory.service.connect", lambda c: cloud_ports(c, cloud, [pilot_job(0, "i-mine")]))
    config_path = tree.root / "etc" / "factory.yaml"

    status = CliRunner().invoke(main, ["factory", "status", "-c", str(config_path)], prog_name="updraft")
    assert status.exit_code == 0, (status.stdout, status.stderr)
    assert "cloud            instances: running 1; 1 belong to no pilot" in status.stdout
    assert "entry cloud: instance i-lost (running since " in status.stdout
    plan = CliRunner().invoke(main, ["factory", "plan", "-c", str(config_path)], prog_name="updraft")
    assert "(cloud)          terminate i-lost: unknown to this factory for more than 3600 s" in plan.stdout
    assert ("terminate", ENDPOINT, ("i-lost",)) not in cloud.calls  # plan and status act on nothing


# --------------------------------------------------------------------------
# The real port: endpoint rule, credentials, deadline
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://ec2.us-east-1.localhost:30901/", ("http://127.0.0.1:30901/", "us-east-1")),
        ("https://ec2.eu-west-1.amazonaws.com/", ("https://ec2.eu-west-1.amazonaws.com/", "eu-west-1")),
        ("https://ec2.example/", ("https://ec2.example/", "us-east-1")),
    ],
)
def test_endpoint_rule(endpoint: str, expected: tuple[str, str]) -> None:
    assert connection(endpoint) == expected


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection_ in held:
        connection_.close()
    server.close()


def test_a_server_that_never_answers_costs_one_deadline(silent_server: int, keys: Path) -> None:
    api = Ec2Api(timeout=2.0)
    credentials = CloudCredentials(keys / "access", keys / "secret")
    endpoint = f"http://ec2.us-east-1.localhost:{silent_server}/"
    started = time.monotonic()
    with pytest.raises(CloudError, match=r"did not answer within 2 s \(listing instances\)"):
        api.instances(endpoint, credentials, FACTORY)
    assert 1.9 < time.monotonic() - started < 3.5
    started = time.monotonic()
    with pytest.raises(CloudError, match="did not answer within 2 s"):
        api.terminate(endpoint, credentials, ["i-1"])
    assert time.monotonic() - started < 0.5  # not asked again this cycle


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "EC2 key file: cannot read {path}: No such file or directory (expected one key)"),
        (b"  \n", "EC2 key file: {path} is empty (expected one key)"),
        (b"\xff\xfesecret", "EC2 key file: {path} is not UTF-8 text (expected one key)"),
        (b"secret words\n", "EC2 key file {path} holds more than one word (expected one key)"),
    ],
)
def test_credential_errors_name_the_file_never_its_content(
    tmp_path: Path, keys: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "access"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CloudError) as raised:
        Ec2Api(timeout=5.0).instances(
            "http://ec2.us-east-1.localhost:1/", CloudCredentials(path, keys / "secret"), FACTORY
        )
    assert str(raised.value) == expected.format(path=path)
    assert "secret" not in str(raised.value).replace(str(path), "")


def test_a_refused_connection_is_a_cloud_error_naming_the_endpoint(keys: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://ec2.us-east-1.localhost:{port}/"
    started = time.monotonic()
    with pytest.raises(CloudError, match=f"EC2 API {endpoint}: listing instances failed"):
        Ec2Api(timeout=5.0).instances(endpoint, CloudCredentials(keys / "access", keys / "secret"), FACTORY)
    assert time.monotonic() - started < 5.0

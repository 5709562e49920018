"""A two-node pilot on the lab's real Slurm, sent by Updraft's own commands.

Layers: the lab's `hpc-2node` entry (two nodes per pilot, GLIDEIN_Site
HPC2N) under a factory of its own -> two 2-core user jobs that accept only
HPC2N -> `frontend once` asks for one pilot (4 cores) -> `factory once`
submits it through the blahp -> Slurm runs one job on node1 and node2 -> the
glidein's `srun` starts a startd on each node (job sandboxes in the node's
scratch folder), both joining the VO pool as one pilot -> one user job runs
on each node -> both nodes retire after their idle tail -> Slurm's own
record says COMPLETED, and the pilot's report speaks for both nodes.

The lab's Slurm has two nodes of two cores, shared with the other HPC tests:
the test waits for both to be idle before it starts and leaves them idle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import htcondor2
import pytest
import yaml

from updraft.condor import Collector, Schedd
from updraft.glidein.report import parse_report
from updraft.lab import slurm
from updraft.lab.labconfig import factory_config, frontend_config, node_scratch, write_component_configs
from updraft.lab.runtime import Runtime
from updraft.lab.topology import FRONTEND, Topology

from .jobs import wait_for, wait_for_completion
from .roles import invalidate_as
from .test_factory import updraft

FACTORY = "multinode-factory"
"""A factory name of its own, so its counts hold this test's pilot alone."""
SLOT_PROJECTION = ["Name", "GLIDEIN_ClusterId", "GLIDEIN_ProcId", "GLIDEIN_Nodes", "GLIDEIN_NodeIndex", "TotalSlotCpus"]
IDLE_TAIL_SECONDS = 15


@pytest.fixture(scope="module")
def configs(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The lab's configs with the multi-node entry alone and a short idle tail, staged by `reconfig`."""
    write_component_configs(lab)
    folder = tmp_path_factory.mktemp("multinode")
    factory = factory_config(lab)
    factory["name"] = FACTORY
    factory["work_dir"] = str(lab.work_dir / FACTORY)
    factory["monitoring"] = {"dir": str(folder / "factory-monitoring"), "writers": {"json": {}}}
    entry = factory["entries"][lab.hpc.multinode_entry]
    entry["glidein"] = {**entry["glidein"], "idle_tail_seconds": IDLE_TAIL_SECONDS, "retire_spread_seconds": 0}
    factory["entries"] = {lab.hpc.multinode_entry: entry}
    frontend = frontend_config(lab)
    frontend["factories"] = {FACTORY: next(iter(frontend["factories"].values()))}
    frontend["work_dir"] = str(folder / "frontend")
    frontend["monitoring"] = {"dir": str(folder / "frontend-monitoring"), "writers": {"json": {}}}
    paths = folder / "factory.yaml", folder / "frontend.yaml"
    for path, content in zip(paths, (factory, frontend), strict=True):
        path.write_text(yaml.safe_dump(content))
    staged = updraft("factory", "reconfig", "--config", str(paths[0])).stdout
    assert f"staged {lab.hpc.multinode_entry}: http://" in staged
    assert "staged main: http://" in updraft("frontend", "reconfig", "--config", str(paths[1])).stdout
    return paths


def idle_nodes(lab: Topology, runtime: Runtime) -> bool:
    states = slurm.node_states(lab, runtime)
    return set(states) == set(lab.hpc.nodes) and set(states.values()) == {"idle"}


@pytest.fixture
def quiet_cluster(lab: Topology, lab_runtime: Runtime, factory_schedd: Schedd, vo_schedd: Schedd) -> Iterator[None]:
    """Both nodes idle before (other tests share them) and after; no request, pilot or job outlives the test."""
    wait_for(lambda: idle_nodes(lab, lab_runtime), 300, interval=2)
    yield
    invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", "true")
    factory_schedd.remove(f'UpdraftFactory =?= "{FACTORY}"', "multinode test done")
    vo_schedd.remove('DESIRED_Sites =?= "HPC2N"', "multinode test done")
    wait_for(lambda: idle_nodes(lab, lab_runtime), 120, interval=2)


def our_rows(lab: Topology, frontend_yaml: Path) -> list[dict]:
    """The frontend's rows for this test's entry. The frontend is the lab's (lab-vo): requests other
    tests' lab-vo left in the WMS collector are kept as its last good ones, and show as rows too."""
    key = f"{lab.hpc.multinode_entry}@{FACTORY}"
    return [row for row in monitoring(frontend_yaml, "frontend")["rows"] if row["entry"] == key]


def monitoring(config: Path, kind: str) -> dict:
    """The service's JSON status of its last cycle."""
    settings = yaml.safe_load(config.read_text())
    return json.loads(next(Path(settings["monitoring"]["dir"]).glob(f"{kind}-*.json")).read_text())


def two_jobs_for_the_two_node_pilots(lab: Topology, vo_schedd: Schedd, job_dir: Path) -> int:
    """Two 2-core jobs that only the multi-node entry's pilots may run: one pilot of 2 nodes x 2 cores."""
    return vo_schedd.submit(
        {
            "executable": "/bin/sleep",
            "arguments": "10",
            "initialdir": str(job_dir),
            "log": str(job_dir / "user.log"),
            "request_cpus": str(lab.hpc.cpus_per_node),
            "request_memory": "128",
            "+DESIRED_Sites": f'"{lab.hpc.multinode_site}"',
            "requirements": "IS_GLIDEIN =?= True && stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
            "should_transfer_files": "YES",
        },
        count=2,
    )


def assert_one_pilot_of_two_startds(lab: Topology, slots: list[dict]) -> int:
    """One startd per node, both naming the same pilot, each its own node index and its own scratch
    folder (not the shared work dir); returns the pilot's cluster."""
    assert sorted((s["GLIDEIN_Nodes"], s["GLIDEIN_NodeIndex"]) for s in slots) == [(2, 0), (2, 1)], slots
    assert len({(s["GLIDEIN_ClusterId"], s["GLIDEIN_ProcId"]) for s in slots}) == 1, slots
    assert len({s["Name"] for s in slots}) == 2 and all(s["TotalSlotCpus"] == lab.hpc.cpus_per_node for s in slots)
    pilot_cluster = int(slots[0]["GLIDEIN_ClusterId"])
    scratch = sorted(p.name.rsplit("_", 1)[1] for p in node_scratch(lab).glob(f"glidein_{pilot_cluster}_0_*"))
    assert scratch == ["node0", "node1"], scratch
    return pilot_cluster


def assert_both_services_count_one_pilot_of_four_cores(lab: Topology, factory_yaml: Path, frontend_yaml: Path) -> None:
    def counted() -> tuple[dict, dict] | None:
        updraft("frontend", "once", "--config", str(frontend_yaml))
        updraft("factory", "once", "--config", str(factory_yaml))
        (frontend_row,) = our_rows(lab, frontend_yaml)
        (factory_row,) = monitoring(factory_yaml, "factory")["pilots"]
        if frontend_row["slots_total"] and factory_row["running"]:
            return frontend_row, factory_row
        return None

    frontend_row, factory_row = wait_for(counted, 60, interval=2)
    assert (frontend_row["slots_total"], frontend_row["slots_cores"]) == (1, 4), frontend_row
    assert (factory_row["running"], factory_row["cores_running"]) == (1, 4), factory_row
    (entry_row,) = monitoring(factory_yaml, "factory")["entries"]
    assert entry_row["cores_per_pilot"] == 4, entry_row


def assert_one_job_ran_on_each_node(vo_schedd: Schedd, user: int) -> None:
    wait_for_completion(vo_schedd, user, 120)
    finished = vo_schedd.history(f"ClusterId == {user}", ["ProcId", "ExitCode", "LastRemoteHost"], limit=2)
    assert len(finished) == 2 and {ad["ExitCode"] for ad in finished} == {0}, finished
    hosts = {ad["LastRemoteHost"].split("@")[1] for ad in finished}
    assert {host.rsplit("_", 1)[1] for host in hosts} == {"node0", "node1"}, hosts


def test_a_two_node_pilot_is_one_slurm_job_two_startds_and_one_pilot_of_four_cores(
    lab: Topology,
    lab_runtime: Runtime,
    configs: tuple[Path, Path],
    quiet_cluster: None,
    vo_schedd: Schedd,
    factory_schedd: Schedd,
    job_dir: Path,
) -> None:
    factory_yaml, frontend_yaml = configs
    user = two_jobs_for_the_two_node_pilots(lab, vo_schedd, job_dir)
    updraft("factory", "once", "--config", str(factory_yaml))  # advertises the entry
    requested = time.monotonic()

    def one_cycle_each() -> bool:
        updraft("frontend", "once", "--config", str(frontend_yaml))
        return "submitted 1," in updraft("factory", "once", "--config", str(factory_yaml)).stdout

    wait_for(one_cycle_each, 60, interval=2)
    (request,) = our_rows(lab, frontend_yaml)  # one request, one submission
    assert (request["requested_idle"], request["requested_max"]) == (1, 1), request

    ours = f'GLIDEIN_Factory =?= "{FACTORY}" && PartitionableSlot =?= True'
    vo = Collector(lab.vo.collector)
    slots = wait_for(lambda: len(s := vo.query(htcondor2.AdType.Startd, ours, SLOT_PROJECTION)) == 2 and s, 120, 0.5)
    print(f"request to both startds in the VO collector: {time.monotonic() - requested:.1f} s")
    pilot_cluster = assert_one_pilot_of_two_startds(lab, slots)

    # Slurm's own view: one job of both nodes, run as the factory's user.
    (pilot,) = factory_schedd.query(f"ClusterId == {pilot_cluster}", ["GridJobId"])
    slurm_id = pilot["GridJobId"].rsplit("/", 1)[-1]
    job = slurm.jobs(lab, lab_runtime)[slurm_id]
    assert (job.state, job.nodes, job.node_list) == ("RUNNING", 2, "node[1-2]"), job

    assert_both_services_count_one_pilot_of_four_cores(lab, factory_yaml, frontend_yaml)
    assert_one_job_ran_on_each_node(vo_schedd, user)

    # Nobody sends more work: both nodes retire after their idle tail; the pilot leaves the queue,
    # Slurm records the job COMPLETED, and the head's report speaks for both nodes.
    wait_for_completion(factory_schedd, pilot_cluster, 180)
    record = wait_for(lambda: slurm.completions(lab).get(slurm_id), 30)
    assert not list(node_scratch(lab).glob(f"glidein_{pilot_cluster}_0_*")), "each node removed its scratch folder"
    assert (record["JobState"], record["NodeCnt"], record["NodeList"]) == ("COMPLETED", "2", "node[1-2]"), record
    work_dir = lab.work_dir / FACTORY / "entries" / lab.hpc.multinode_entry / "lab-vo"
    report = parse_report(next(work_dir.glob(f"pilot.{pilot_cluster}.0.out")).read_text())
    assert report is not None and report.ok, report
    assert (report.nodes, report.cpus, report.jobs_run) == (2, lab.hpc.cpus_per_node, 2), report

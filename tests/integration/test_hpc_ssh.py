"""Pilots over SSH to the HPC site's login node (BOSCO style), checked against Slurm's own view.

The factory user's grid manager runs `remote_gahp` to the lab's sshd, logs
in as the unprivileged `hpc` user with its default BOSCO key, and submits
through the blahp installed in that user's home. Nothing here trusts
HTCondor's word alone: Slurm says who runs the job, where, and whether a
removal cancelled it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import htcondor2
import pytest
import yaml

from updraft import protocol
from updraft.condor import Collector, Schedd
from updraft.factory.config import FactoryConfig
from updraft.factory.credentials import load_keyring, public_key_attributes
from updraft.frontend.config import FrontendConfig
from updraft.frontend.credentials import FactoryKey, seal_requests
from updraft.frontend.model import Decision, EntryAd
from updraft.frontend.publish import request_ad
from updraft.frontend.stage import pilot_params, stage_groups
from updraft.lab import loginnode, slurm
from updraft.lab.labconfig import factory_config, frontend_config, write_component_configs
from updraft.lab.runtime import ChrootRuntime, Runtime
from updraft.lab.topology import FACTORY, FRONTEND, Topology

from .jobs import pilot_token, wait_for, wait_for_completion
from .roles import advertise_as, invalidate_as
from .test_factory import updraft

IDLE, RUNNING = 1, 2
TIMEOUT = 120
OUTAGE_SECONDS = 45
"""How long the login node stays down: several of the grid manager's probe and ping intervals."""

PILOT = """\
#!/bin/sh
# Pilot-shaped: reports where Slurm put it, then holds its node for a while.
echo "user $(id -un) slurm job ${SLURM_JOB_ID:-none} node ${SLURMD_NODENAME:-none} args $*"
sleep "${1:-1}"
"""

_SUBMIT = """
import json, sys
from updraft.condor import Collector
collector, schedd_name = sys.argv[1], sys.argv[2]
print(Collector(collector).schedd(schedd_name).submit(json.load(sys.stdin)))
"""


def submit_as_factory(lab: Topology, description: dict[str, str]) -> int:
    """Queue a job in the factory schedd as the factory, who owns pilots (its grid manager runs as it)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_")},
        "CONDOR_CONFIG": str(lab.role_config(FACTORY)),
    }
    done = subprocess.run(
        [sys.executable, "-c", _SUBMIT, lab.wms.collector, lab.factory.schedd],
        input=json.dumps(description),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    return int(done.stdout.strip().splitlines()[-1])


def ssh_pilot(lab: Topology, job_dir: Path, seconds: int) -> dict[str, str]:
    script = job_dir / "pilot.sh"
    script.write_text(PILOT)
    script.chmod(0o755)
    return {
        "universe": "grid",
        "grid_resource": f"batch slurm {lab.login_node.ssh_host}",
        "executable": str(script),
        "arguments": str(seconds),
        "initialdir": str(job_dir),
        "output": str(job_dir / "out"),
        "error": str(job_dir / "err"),
        "log": str(job_dir / "log"),
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "batch_queue": lab.hpc.partition,
    }


def slurm_id(schedd: Schedd, cluster: int) -> str | None:
    """The Slurm job id the blahp reported (``GridJobId = batch slurm <sandbox> slurm/<date>/<id>``)."""
    ads = schedd.query(f"ClusterId == {cluster}", ["GridJobId"])
    grid_job_id = str(ads[0].get("GridJobId") or "") if ads else ""
    parts = grid_job_id.split()
    return parts[-1].rsplit("/", 1)[-1] if len(parts) == 4 else None


def job_status(schedd: Schedd, cluster: int) -> dict:
    wanted = ["JobStatus", "HoldReason", "GridJobId", "GridResourceUnavailableTime"]
    ads = schedd.query(f"ClusterId == {cluster}", wanted)
    return ads[0] if ads else {}


@pytest.fixture(scope="module")
def chroot(lab: Topology, lab_runtime: Runtime, factory_schedd: Schedd) -> Iterator[ChrootRuntime]:
    """The lab's root, where the login node runs; afterwards no pilot of these tests is left in Slurm
    (a job's slurmstepd keeps the lab folder busy when the lab goes down)."""
    assert isinstance(lab_runtime, ChrootRuntime), "the login node runs in the lab's HTCondor root"
    yield lab_runtime
    if not loginnode.answers(lab.login_node):
        loginnode.start(lab, lab_runtime)
    factory_schedd.remove(f'GridResource == "batch slurm {lab.login_node.ssh_host}"', "test module done")
    wait_for(lambda: not _active(lab, lab_runtime), TIMEOUT)


def _active(lab: Topology, runtime: Runtime) -> list[str]:
    """The batch user's Slurm jobs that still hold a node."""
    return [
        job.job_id
        for job in slurm.jobs(lab, runtime).values()
        if job.user == lab.login_node.user and job.state in ("PENDING", "RUNNING", "COMPLETING")
    ]


def test_the_login_node_takes_the_factorys_key_and_nothing_else(lab: Topology, chroot: ChrootRuntime) -> None:
    node = lab.login_node
    assert loginnode.answers(node)
    ssh = [
        "ssh",
        "-p",
        str(node.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ]
    # remote_gahp's way in: the factory's BOSCO key, through an agent fed its passphrase.
    login = f"/usr/sbin/remote_gahp {node.ssh_host} blahpd"
    as_factory = ["setpriv", f"--reuid={FACTORY.uid}", f"--regid={FACTORY.uid}", "--init-groups", "--reset-env"]
    banner = chroot.run([*as_factory, "sh", "-c", login], {}, "blahpd over ssh", input_text="QUIT\n")
    assert "$GahpVersion:" in banner and "blahpd" in banner
    # Another user of the root has no key the login node accepts: refused, not asked for a password.
    refused = subprocess.run(
        chroot.argv([*ssh, f"{node.user}@127.0.0.1", "true"], {}), capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr


def test_a_pilot_over_ssh_runs_as_a_slurm_job_of_the_batch_user_and_removal_cancels_it(
    lab: Topology, chroot: ChrootRuntime, factory_schedd: Schedd, job_dir: Path
) -> None:
    started = time.monotonic()
    cluster = submit_as_factory(lab, ssh_pilot(lab, job_dir, 600))
    job_id = wait_for(lambda: slurm_id(factory_schedd, cluster), TIMEOUT)
    submitted = time.monotonic() - started
    running = wait_for(lambda: _slurm_job(lab, chroot, job_id, "RUNNING"), TIMEOUT)
    in_slurm = time.monotonic() - started
    assert running.user == lab.login_node.user
    assert running.node_list in lab.hpc.nodes
    wait_for(lambda: job_status(factory_schedd, cluster).get("JobStatus") == RUNNING, TIMEOUT)
    print(f"over ssh: Slurm job {job_id} {submitted:.1f} s after submit, RUNNING after {in_slurm:.1f} s")

    factory_schedd.remove(f"ClusterId == {cluster}", "test: the pilot is no longer wanted")
    cancelled = wait_for(lambda: _slurm_job(lab, chroot, job_id, "CANCELLED"), TIMEOUT)
    assert cancelled.user == lab.login_node.user
    wait_for(lambda: not factory_schedd.query(f"ClusterId == {cluster}", ["JobStatus"]), TIMEOUT)
    assert slurm.completions(lab)[job_id]["JobState"] == "CANCELLED"


def test_a_short_pilot_over_ssh_completes_and_its_output_comes_back(
    lab: Topology, chroot: ChrootRuntime, factory_schedd: Schedd, job_dir: Path
) -> None:
    started = time.monotonic()
    cluster = submit_as_factory(lab, ssh_pilot(lab, job_dir, 1))
    final = wait_for_completion(factory_schedd, cluster, TIMEOUT)
    print(f"over ssh: a 1 s pilot's round trip (submit to output back) took {time.monotonic() - started:.1f} s")
    assert final["ExitCode"] == 0
    job_id = str(final["GridJobId"]).split()[-1].rsplit("/", 1)[-1]
    record = slurm.completions(lab)[job_id]
    assert record["JobState"] == "COMPLETED"
    output = (job_dir / "out").read_text()
    assert f"user {lab.login_node.user} slurm job {job_id} node {record['NodeList']} args 1" in output


def test_login_node_outage_queues_pilots_submits_nothing_twice_and_resumes(
    lab: Topology, chroot: ChrootRuntime, factory_schedd: Schedd, job_dir: Path
) -> None:
    for name in ("before", "during"):
        (job_dir / name).mkdir()
        (job_dir / name).chmod(0o777)  # the factory's grid manager writes the job logs there
    clusters: list[int] = []
    try:
        clusters.append(submit_as_factory(lab, ssh_pilot(lab, job_dir / "before", 600)))
        before_id = wait_for(lambda: slurm_id(factory_schedd, clusters[0]), TIMEOUT)
        wait_for(lambda: _slurm_job(lab, chroot, before_id, "RUNNING"), TIMEOUT)
        known = set(slurm.jobs(lab, chroot))

        loginnode.stop(lab)
        assert not loginnode.processes(lab)
        assert not loginnode.answers(lab.login_node)
        clusters.append(submit_as_factory(lab, ssh_pilot(lab, job_dir / "during", 600)))
        during = clusters[1]
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            status = job_status(factory_schedd, during)
            assert status.get("JobStatus") == IDLE, status
            assert slurm_id(factory_schedd, during) is None
            time.sleep(3)
        # Idle, and the job says why: the grid manager marks the resource unavailable.
        assert job_status(factory_schedd, during).get("GridResourceUnavailableTime")
        # The pilot submitted before the outage keeps its Slurm job, which ran on regardless.
        assert slurm_id(factory_schedd, clusters[0]) == before_id
        assert _slurm_job(lab, chroot, before_id, "RUNNING")
        assert set(slurm.jobs(lab, chroot)) == known, "nothing reaches Slurm while its login node is down"

        back = time.monotonic()
        loginnode.start(lab, chroot)
        during_id = wait_for(lambda: slurm_id(factory_schedd, during), TIMEOUT)
        wait_for(lambda: _slurm_job(lab, chroot, during_id, "RUNNING"), TIMEOUT)
        print(f"after the outage: the queued pilot reached Slurm {time.monotonic() - back:.1f} s after sshd was back")
        new = set(slurm.jobs(lab, chroot)) - known
        assert new == {during_id}, f"one Slurm job for the pilot queued during the outage, and none again: {new}"
        assert slurm_id(factory_schedd, clusters[0]) == before_id
        wait_for(lambda: job_status(factory_schedd, clusters[0]).get("JobStatus") == RUNNING, TIMEOUT)
    finally:
        if not loginnode.answers(lab.login_node):
            loginnode.start(lab, chroot)
        ids = [slurm_id(factory_schedd, cluster) for cluster in clusters]
        factory_schedd.remove(" || ".join(f"ClusterId == {c}" for c in clusters) or "false", "test: done")
        for job_id in filter(None, ids):
            wait_for(lambda job_id=job_id: _slurm_job(lab, chroot, job_id, "CANCELLED"), TIMEOUT)


def _slurm_job(lab: Topology, runtime: Runtime, job_id: str, state: str) -> slurm.SlurmJob | None:
    job = slurm.jobs(lab, runtime).get(job_id)
    return job if job is not None and job.state == state else None


@pytest.fixture(scope="module")
def factory_yaml(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab factory's own config, its hpc-ssh entry as `lab env` writes it."""
    write_component_configs(lab)  # installs the lab pilot in the lab folder
    config = factory_config(lab)
    path = tmp_path_factory.mktemp("factory") / "factory.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ask_for_one_pilot(lab: Topology, entry: str) -> None:
    """What the lab's frontend publishes for one pilot of group main on `entry`: its staged release
    (the pool's settings a pilot needs), sealed to the factory's key, advertised as the frontend."""
    frontend = FrontendConfig.model_validate(frontend_config(lab))
    params = pilot_params(frontend, stage_groups(frontend))["main"]
    now = time.time()
    decision = Decision("main", EntryAd(entry, "lab-factory", {}), 1, 1, protocol.RemoveMode.NONE, 0)
    attrs = public_key_attributes(load_keyring(FactoryConfig.model_validate(factory_config(lab)), now))
    key = FactoryKey("lab-factory", attrs[protocol.F_KEY_ID], attrs[protocol.F_PUBLIC_KEY])
    ads, problems = seal_requests(
        [request_ad(decision, frontend, 1, now, params)],
        {f"{entry}@lab-factory": pilot_token(lab)},
        {"lab-factory": key},
        frontend,
    )
    assert not problems
    advertise_as(lab, FRONTEND, lab.wms.collector, ads)


def test_the_factory_sends_a_pilot_over_ssh_that_slurm_runs_and_that_joins_the_vo_pool(
    lab: Topology, chroot: ChrootRuntime, factory_schedd: Schedd, factory_yaml: Path
) -> None:
    entry = f"{lab.hpc.name}-ssh"
    started = time.monotonic()
    ask_for_one_pilot(lab, entry)
    try:
        done = updraft("factory", "once", "--config", str(factory_yaml))
        assert "submitted 1," in done.stdout, done.stdout
        pilot = f'UpdraftEntry == "{entry}"'
        cluster = int(factory_schedd.query(pilot, ["ClusterId"])[0]["ClusterId"])
        job_id = wait_for(lambda: slurm_id(factory_schedd, cluster), TIMEOUT)
        running = wait_for(lambda: _slurm_job(lab, chroot, job_id, "RUNNING"), TIMEOUT)
        assert running.user == lab.login_node.user
        vo = Collector(lab.vo.collector)
        slots = wait_for(
            lambda: vo.query(htcondor2.AdType.Startd, f'GLIDEIN_Entry_Name == "{entry}"', ["GLIDEIN_Site"]), 180
        )
        print(f"factory over ssh: request to a pilot's slot in the VO pool {time.monotonic() - started:.1f} s")
        assert {s["GLIDEIN_Site"] for s in slots} == {f"{lab.hpc.glidein_site}-SSH"}
    finally:
        invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", "true")
        factory_schedd.remove(f'UpdraftEntry == "{entry}"', "test: done")
    wait_for(lambda: _slurm_job(lab, chroot, job_id, "CANCELLED"), TIMEOUT)

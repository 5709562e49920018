"""The `updraft lab` commands, run as an operator runs them, on the session lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from updraft.lab import control
from updraft.lab.runtime import Runtime
from updraft.lab.topology import Topology

UPDRAFT = str(Path(sys.executable).parent / "updraft")


def updraft(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPDRAFT_") or k == "UPDRAFT_CACHE"}
    return subprocess.run([UPDRAFT, *args], capture_output=True, text=True, env=env, timeout=120)


def test_status_shows_every_daemon_of_the_topology_up(lab: Topology) -> None:
    done = updraft("lab", "status", "--dir", str(lab.base_dir))
    assert done.returncode == 0, done.stderr
    for instance in lab.instances:
        for ad_type, name in instance.expected_ads():
            line = next(row for row in done.stdout.splitlines() if row.split()[:2] == [instance.name, ad_type])
            assert line.endswith(" up"), line
            assert name is None or name in line
    assert "MISSING" not in done.stdout
    for node in lab.hpc.nodes:  # as sinfo reports them
        assert any(
            row.split()[:3] == [lab.hpc.name, "slurmd", node] and row.endswith(" idle")
            for row in done.stdout.splitlines()
        ), done.stdout


def test_up_again_is_harmless_and_keeps_the_same_masters_and_runtime(
    lab: Topology, lab_runtime: Runtime, tmp_path: Path
) -> None:
    before = sorted(control.lab_processes(lab, lab_runtime))
    # Another cache folder must not move a running lab to another HTCondor.
    done = updraft("lab", "up", "--dir", str(lab.base_dir), "--base-port", str(lab.base_port), "--cache", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert sorted(control.lab_processes(lab, lab_runtime)) == before
    assert control.load_state(lab.base_dir)["root"] == str(lab_runtime.root)
    assert not list(tmp_path.iterdir())


def test_env_prints_addresses_and_writes_configs_that_validate(lab: Topology) -> None:
    done = updraft("lab", "env", "--dir", str(lab.base_dir))
    assert done.returncode == 0, done.stderr
    assert f"export CONDOR_CONFIG={lab.client_config}" in done.stdout
    assert lab.wms.collector in done.stdout and lab.vo.collector in done.stdout
    for site in lab.sites:
        assert site.ce_resource in done.stdout
    assert f"grid_resource = batch slurm  (SLURM_CONF={lab.slurm_conf})" in done.stdout
    assert f"# InfluxDB       {lab.influx_url}  (database updraft" in done.stdout
    for component in ("factory", "frontend"):
        path = lab.etc_dir / f"{component}.yaml"
        assert f"export UPDRAFT_{component.upper()}_CONFIG={path}" in done.stdout
        checked = updraft(component, "check-config", "--config", str(path))
        assert checked.returncode == 0, checked.stderr
        assert checked.stderr == ""


@pytest.mark.lab_teardown
def test_down_stops_every_lab_process_and_undoes_its_mounts(lab: Topology, lab_runtime: Runtime) -> None:
    assert control.lab_processes(lab, lab_runtime), "the lab should be running before down"
    done = updraft("lab", "down", "--dir", str(lab.base_dir))
    assert done.returncode == 0, done.stderr
    assert control.lab_processes(lab, lab_runtime) == []
    mounts = Path("/proc/mounts").read_text()
    assert f" {lab_runtime.root / lab.base_dir.relative_to('/')} " not in mounts
    after = updraft("lab", "status", "--dir", str(lab.base_dir))
    assert after.returncode == 1
    assert "no lab" in after.stderr

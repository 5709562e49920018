"""Fixtures for tests against the real lab, layered: config -> lab up -> action.

The lab comes up once per test session in its own folder and on its own
ports, so a developer's running lab is left alone. It is never skipped:
without it these tests fail, loudly.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from updraft.condor import Collector, Schedd, use_client_config
from updraft.frontend.config import FrontendConfig
from updraft.lab import control
from updraft.lab import tsdb as tsdb_lab
from updraft.lab.labconfig import frontend_config
from updraft.lab.runtime import Runtime, choose_runtime, ensure_root
from updraft.lab.topology import Topology, build_topology
from updraft.lab.tsdb import TimeSeriesServers


@pytest.fixture(scope="session")
def lab_topology() -> Topology:
    base_dir = Path(os.environ.get("UPDRAFT_TEST_LAB_DIR", "/var/tmp/updraft-test-lab"))
    return build_topology(base_dir, int(os.environ.get("UPDRAFT_TEST_BASE_PORT", "29718")))


@pytest.fixture(scope="session")
def lab_runtime() -> Runtime:
    return choose_runtime("auto", Path(os.environ.get("UPDRAFT_CACHE", "/var/cache/updraft")))


@pytest.fixture(scope="session")
def lab_lock(lab_topology: Topology) -> Iterator[None]:
    """One test session per lab folder: a second one would take the first one's lab down."""
    lock_path = lab_topology.base_dir.with_name(lab_topology.base_dir.name + ".lock")
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.fail(
                f"another test session uses the lab in {lab_topology.base_dir}; "
                "wait for it, or set UPDRAFT_TEST_LAB_DIR and UPDRAFT_TEST_BASE_PORT"
            )
        yield


@pytest.fixture(scope="session")
def lab(lab_topology: Topology, lab_runtime: Runtime, lab_lock: None) -> Iterator[Topology]:
    """A running lab with empty queues: a stale one from an interrupted run is taken down and wiped."""
    if control.load_state(lab_topology.base_dir) is not None:
        control.down(lab_topology, lab_runtime)
    control.purge(lab_topology.base_dir)
    control.up(lab_topology, lab_runtime, timeout=120)
    use_client_config(lab_topology.client_config)
    yield lab_topology
    if control.load_state(lab_topology.base_dir) is not None:
        control.down(lab_topology, lab_runtime)


@pytest.fixture(scope="session")
def lab_frontend(lab: Topology) -> FrontendConfig:
    """The lab frontend's config, as `lab env` writes it (what a test asks pilots in the name of)."""
    return FrontendConfig.model_validate(frontend_config(lab))


@pytest.fixture(scope="session")
def vo_schedd(lab: Topology) -> Schedd:
    return Collector(lab.vo.collector).schedd(lab.vo.schedd_name)


@pytest.fixture(scope="session")
def factory_schedd(lab: Topology) -> Schedd:
    return Collector(lab.wms.collector).schedd(lab.factory.schedd_name)


@pytest.fixture
def job_dir(lab: Topology, request: pytest.FixtureRequest) -> Path:
    """A folder for one test's jobs, seen at the same path by host and daemons."""
    path = lab.work_dir / "tests" / request.node.name.replace("[", "-").replace("]", "")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o777)
    return path


@pytest.fixture(scope="session")
def tsdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeSeriesServers]:
    """VictoriaMetrics and InfluxDB 1.x from the cached root, on free ports; no HTCondor lab.

    Never skipped: a missing binary or a server that does not come up fails
    the tests that use it, with the end of the server's log.
    """
    root = ensure_root(Path(os.environ.get("UPDRAFT_CACHE", "/var/cache/updraft")))
    with tsdb_lab.running(root, tmp_path_factory.mktemp("tsdb")) as servers:
        yield servers

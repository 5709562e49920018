"""The lab's pure parts: topology, rendered configs, derived component configs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from updraft.factory.config import FactoryConfig
from updraft.factory.pilot_args import glidein_arguments
from updraft.factory.render import PilotSpec, render_submit
from updraft.frontend.config import FrontendConfig
from updraft.lab.control import master_config, render_configs
from updraft.lab.labconfig import PILOT_SETTINGS, factory_config, frontend_config, pilot_config
from updraft.lab.runtime import BLAHP_CONFIG_MODULE, BLAHP_SLURM_STATUS, fix_blahp, parse_passwd
from updraft.lab.slurm import first_job_id, render_slurm_conf, step_job_id
from updraft.lab.topology import FACTORY, FRONTEND, OPERATOR, PILOT, build_topology
from updraft.protocol import PilotParams
from updraft.staging import secret_settings

BASE = Path("/var/tmp/lab-under-test")


@pytest.fixture
def topology():
    return build_topology(BASE, base_port=31000)


def test_collectors_get_distinct_ports_from_the_base_port(topology) -> None:
    collectors = [i for i in topology.instances if i.runs_collector]
    assert [i.collector_port for i in collectors] == [31000, 31001, 31002, 31003]
    assert topology.factory.collector == topology.wms.collector == "127.0.0.1:31001"


def test_collectors_start_before_the_daemons_that_report_to_them(topology) -> None:
    order = [i.name for i in topology.instances]
    assert order.index("wms") < order.index("factory")
    assert order[-1] == "factory"


def test_every_site_has_a_ce_and_a_worker_in_its_own_pool(topology) -> None:
    assert [s.name for s in topology.sites] == ["site1", "site2"]
    for site in topology.sites:
        assert {"SCHEDD", "STARTD", "COLLECTOR", "NEGOTIATOR"} <= set(site.instance.daemons)
        assert site.ce_resource == f"ce@{site.name}.lab {site.instance.collector}"


def test_master_names_are_unique_so_ads_do_not_overwrite_each_other(topology) -> None:
    names = [i.master_name for i in topology.instances]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_site_count_is_configurable(count: int) -> None:
    assert len(build_topology(BASE, site_count=count).sites) == count


def test_rendered_configs_cover_every_instance_with_its_own_local_dir(topology) -> None:
    files = render_configs(topology)
    for instance in topology.instances:
        text = files[master_config(topology, instance)]
        assert f"LOCAL_DIR = {topology.instance_dir(instance)}\n" in text
        assert f"MASTER_NAME = {instance.master_name}\n" in text
        assert f"COLLECTOR_HOST = {instance.collector}\n" in text
        assert ("COLLECTOR_ARGS = -p" in text) == instance.runs_collector
        # Benchmarks would hold up a graceful shutdown for minutes.
        assert ("RunBenchmarks = False" in text) == (instance.startd_name is not None)


def test_common_config_carries_the_sandbox_and_session_fixes(topology) -> None:
    common = render_configs(topology)[topology.common_config]
    for line in (
        "MOUNT_UNDER_SCRATCH =\n",
        "USE_PID_NAMESPACES = False\n",
        "BASE_CGROUP =\n",
        "SEC_USE_FAMILY_SESSION = False\n",
        "NETWORK_INTERFACE = 127.0.0.1\n",
        "NO_DNS = True\n",
    ):
        assert line in common
    assert "{{" not in common


def test_client_config_authenticates_with_the_lab_token(topology) -> None:
    client = render_configs(topology)[topology.client_config]
    assert f"SEC_TOKEN_DIRECTORY = {topology.tokens_dir}\n" in client
    assert "SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS\n" in client
    assert "SEC_CLIENT_ENCRYPTION = REQUIRED\n" in client
    assert f"COLLECTOR_HOST = {topology.vo.collector}\n" in client


def test_derived_component_configs_validate_and_name_the_lab_addresses(topology) -> None:
    factory = FactoryConfig.model_validate(factory_config(topology))
    frontend = FrontendConfig.model_validate(frontend_config(topology))
    assert factory.wms_collector == topology.wms.collector
    condor_entries = {e.resource for e in factory.entries.values() if e.grid_type == "condor"}
    assert condor_entries == {s.ce_resource for s in topology.sites}
    assert factory.entries["hpc"].grid_resource == "batch slurm"
    assert factory.entries["hpc-ssh"].grid_resource == f"batch slurm hpc@127.0.0.1:{topology.hpc.ssh_port}"
    assert frontend.vo_collector == topology.vo.collector
    assert list(frontend.schedds) == [topology.vo.schedd_name, topology.submit2.schedd_name]
    assert frontend.condor_config == topology.role_config(FRONTEND)
    assert factory.condor_config == topology.role_config(FACTORY)
    # Each side trusts the other's own identity, and pilots get their own.
    assert factory.entries["site1"].frontends["lab-vo"].identity == FRONTEND.identity
    assert frontend.factories["lab-factory"].identity == FACTORY.identity
    assert frontend.identity == FRONTEND.identity and frontend.pilot_tokens.identity == PILOT.identity


def test_the_lab_runs_on_tokens_alone_encrypted_with_an_identity_per_role(topology) -> None:
    configs = render_configs(topology)
    common = configs[topology.common_config]
    for line in (
        "SEC_DEFAULT_AUTHENTICATION_METHODS = IDTOKENS\n",
        "SEC_DEFAULT_ENCRYPTION = REQUIRED\n",
        "SEC_DEFAULT_INTEGRITY = REQUIRED\n",
        "TRUST_DOMAIN = lab\n",
    ):
        assert line in common
    assert "FS" not in common.split("SEC_DEFAULT_AUTHENTICATION_METHODS")[1].splitlines()[0]
    settings = [line for line in common.splitlines() if not line.startswith("#")]
    methods = [line.split("=", 1)[1] for line in settings if "AUTHENTICATION_METHODS" in line]
    assert methods and all(re.fullmatch(r"\s*IDTOKENS\s*", value) for value in methods)
    assert not any("CLAIMTOBE" in line or ("ALLOW_" in line and "*/" in line) for line in settings)
    vo = configs[topology.instance_dir(topology.vo) / "condor_config"]
    assert f"ALLOW_ADVERTISE_STARTD_COLLECTOR = {PILOT.identity}\n" in vo
    wms = configs[topology.instance_dir(topology.wms) / "condor_config"]
    assert f"ALLOW_DAEMON_COLLECTOR = $(ALLOW_DAEMON), {FACTORY.identity}, {FRONTEND.identity}\n" in wms
    for role in (FACTORY, FRONTEND):
        text = configs[topology.role_config(role)]
        assert f"include : {topology.client_config}\n" in text
        assert f"SEC_TOKEN_DIRECTORY = {topology.role_tokens(role)}\n" in text


@pytest.mark.parametrize(
    ("text", "user", "expected"),
    [
        ("root:x:0:0:root:/root:/bin/sh\ncondor:x:100:101::/var/lib/condor:/usr/sbin/nologin\n", "condor", (100, 101)),
        ("root:x:0:0:root:/root:/bin/sh\n", "condor", None),
        ("condorx:x:7:7::/:/bin/sh\n", "condor", None),
        ("broken line\n", "broken line", None),
    ],
)
def test_parse_passwd(text: str, user: str, expected) -> None:
    assert parse_passwd(text, user) == expected


def test_a_root_with_a_lab_mounted_inside_is_not_rebuilt(tmp_path, monkeypatch) -> None:
    from updraft.errors import LabError
    from updraft.lab import runtime

    root = runtime.root_path(tmp_path)
    (root).mkdir()
    (root / ".updraft-root").write_text("0\n")
    monkeypatch.setattr(runtime, "mount_points", lambda: [Path("/proc"), root / "proc", root / "var/tmp/lab"])
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # the os module runtime uses
    with pytest.raises(LabError, match=r"a lab still uses it \(.*/proc, .* mounted\).*updraft lab down"):
        runtime.ensure_root(tmp_path)
    assert (root / ".updraft-root").read_text() == "0\n"


def test_the_factory_host_runs_influxdb_on_its_own_ports_when_the_runtime_has_it(topology) -> None:
    files = render_configs(topology)
    factory = files[master_config(topology, topology.factory)]
    assert f"INFLUXDB_ARGS = -config {topology.influx_config}" in factory and "STAGING_WEB, INFLUXDB" not in factory
    assert "DAEMON_LIST = $(DAEMON_LIST), INFLUXDB" in factory
    port = topology.factory.influx_port
    assert port not in {i.collector_port for i in topology.instances} | {topology.factory.web_port}
    conf = files[topology.influx_config]
    assert f'bind-address = "127.0.0.1:{port}"' in conf and f'bind-address = "127.0.0.1:{port + 1}"' in conf
    assert all(
        "INFLUXDB" not in text for path, text in files.items() if path != master_config(topology, topology.factory)
    )
    without = render_configs(topology, influxdb=False)
    assert "INFLUXDB" not in without[master_config(topology, topology.factory)]
    assert topology.influx_config not in without


def _settings(text: str) -> dict[str, str]:
    """``NAME = value`` lines of a condor config, by name (comments and includes left out)."""
    pairs = (line.partition("=") for line in text.splitlines() if not line.startswith(("#", "include")))
    return {name.strip(): value.strip() for name, sep, value in pairs if sep}


def _allowed(configs: dict, topology, instance: str, level: str, subsystem: str) -> set[str]:
    """The identities an instance's daemon lists for a level, with the common macros expanded."""
    common = _settings(configs[topology.common_config])
    own = {**common, **_settings(configs[master_config(topology, topology.instance(instance))])}
    value = own.get(f"ALLOW_{level}_{subsystem}", own.get(f"ALLOW_{level}", ""))
    for _ in range(3):
        value = re.sub(r"\$\((\w+)\)", lambda m: own.get(m.group(1), ""), value)
    return {item.strip() for item in value.split(",") if item.strip()}


@pytest.mark.parametrize(
    ("instance", "level", "subsystem", "expected"),
    [
        ("wms", "READ", "COLLECTOR", {FACTORY, FRONTEND}),
        ("wms", "DAEMON", "COLLECTOR", {FACTORY, FRONTEND}),
        ("vo", "READ", "COLLECTOR", {FRONTEND}),
        ("vo", "ADVERTISE_STARTD", "COLLECTOR", {PILOT}),
        ("vo", "WRITE", "COLLECTOR", set()),
        ("vo", "READ", "SCHEDD", {FRONTEND}),
        ("vo", "WRITE", "SCHEDD", set()),
        ("vo", "READ", "NEGOTIATOR", set()),
        ("vo", "DAEMON", "SCHEDD", set()),
        ("submit2", "READ", "SCHEDD", {FRONTEND}),
        ("submit2", "WRITE", "SCHEDD", set()),
        ("factory", "READ", "SCHEDD", {FACTORY}),
        ("factory", "WRITE", "SCHEDD", {FACTORY}),
        ("factory", "DAEMON", "SCHEDD", set()),
        ("site1", "READ", "COLLECTOR", {FACTORY}),
        ("site1", "WRITE", "SCHEDD", {FACTORY}),
        ("site1", "READ", "STARTD", set()),
    ],
)
def test_each_role_is_allowed_only_what_it_needs_on_each_daemon(
    topology, instance: str, level: str, subsystem: str, expected: set
) -> None:
    """Beyond the daemons (and, but for advertising a startd, the operator): exactly the roles of the matrix
    in docs/security.md."""
    allowed = _allowed(render_configs(topology), topology, instance, level, subsystem)
    others = allowed - {"condor@*", OPERATOR.identity}
    assert others == {role.identity for role in expected}


def test_no_role_but_the_daemons_and_the_operator_is_allowed_anything_by_default(topology) -> None:
    common = _settings(render_configs(topology)[topology.common_config])
    allow = {name: value for name, value in common.items() if name.startswith("ALLOW_")}
    assert allow and all(FACTORY.identity not in v and FRONTEND.identity not in v for v in allow.values())
    assert not any("*@" in value for value in allow.values())  # no wildcard identity of the lab


def test_a_pilot_may_not_read_the_vo_collector_it_advertises_to(topology) -> None:
    """HTCondor lets whoever may advertise a startd read the collector; the lab refuses that explicitly."""
    vo = _settings(render_configs(topology)[master_config(topology, topology.vo)])
    assert vo["DENY_READ_COLLECTOR"] == PILOT.identity


def test_the_staged_pool_config_holds_only_settings_a_pilot_uses(topology) -> None:
    common = render_configs(topology)[topology.common_config]
    staged = pilot_config(common)
    settings = _settings(staged)
    assert set(settings) <= PILOT_SETTINGS
    assert {"TRUST_DOMAIN", "SEC_DEFAULT_AUTHENTICATION_METHODS", "SEC_DEFAULT_ENCRYPTION"} <= set(settings)
    assert not any(name.startswith(("ALLOW_", "DENY_")) for name in settings)
    for secret in ("SIGNING_KEY", "PASSWORD", "SUPER_USERS", str(topology.secrets_dir)):
        assert secret not in staged
    assert "include" not in staged and "$(" not in staged
    assert settings["SEC_DEFAULT_ENCRYPTION"] == "REQUIRED"
    # What staging refuses in any condor-config file: the whole pool config has it, the pilots' has not.
    assert secret_settings(common.encode()) and not secret_settings(staged.encode())


def test_the_pilot_config_whitelist_drops_anything_it_does_not_name() -> None:
    pool = (
        "SEC_TOKEN_POOL_SIGNING_KEY_FILE = /etc/condor/POOL\n"
        "ALLOW_WRITE = *\nDENY_READ = x\n  TRUST_DOMAIN = vo.example \n"
        "include : /etc/condor/more.config\nUPDATE_INTERVAL=5\nSTARTD.UPDATE_INTERVAL = 1\n"
    )
    assert _settings(pilot_config(pool)) == {"TRUST_DOMAIN": "vo.example", "UPDATE_INTERVAL": "5"}


def test_the_hpc_site_takes_ports_after_the_others_and_none_twice(topology) -> None:
    hpc = topology.hpc
    others = {i.collector_port for i in topology.instances} | {topology.factory.web_port, topology.factory.influx_port}
    ports = [hpc.ctld_port, *hpc.node_ports, hpc.ssh_port]
    assert len(set(ports)) == len(ports) == 4
    assert not set(ports) & others
    assert topology.factory.influx_port is not None and min(ports) > topology.factory.influx_port + 1


def test_slurm_conf_names_every_node_with_its_own_port_and_the_lab_munge_socket(topology) -> None:
    conf = render_configs(topology)[topology.slurm_conf]
    for node, port in zip(topology.hpc.nodes, topology.hpc.node_ports, strict=True):
        assert f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} " in conf
    assert f"SlurmctldPort={topology.hpc.ctld_port}\n" in conf
    assert f"AuthInfo=socket={topology.slurm_dir}/run/munge.socket\n" in conf
    assert "ProctrackType=proctrack/linuxproc\n" in conf
    assert render_configs(topology)[topology.slurm_dir / "cgroup.conf"].endswith("CgroupPlugin=disabled\n")


def test_the_hpc_master_runs_slurm_in_the_foreground_and_the_factory_finds_its_cluster(topology) -> None:
    configs = render_configs(topology)
    hpc = configs[topology.instance_dir(topology.hpc.instance) / "condor_config"]
    assert "DAEMON_LIST = MASTER, MUNGED, SLURMCTLD, SLURMD_NODE1, SLURMD_NODE2\n" in hpc
    assert f"SLURMD_NODE2_ARGS = -D -N node2 -f {topology.slurm_conf}\n" in hpc
    assert "MUNGED_ARGS = -u munge -- /usr/sbin/munged --foreground" in hpc
    factory = configs[topology.instance_dir(topology.factory) / "condor_config"]
    assert f'SCHEDD_ENVIRONMENT = "SLURM_CONF={topology.slurm_conf}"\n' in factory


def test_each_lab_numbers_its_slurm_jobs_apart_from_every_other_lab(tmp_path) -> None:
    first, second = build_topology(tmp_path / "a", 29618), build_topology(tmp_path / "b", 29718)
    assert f"FirstJobId={first_job_id(first)}\n" in render_slurm_conf(first)
    assert first_job_id(second) - first_job_id(first) >= 100_000
    assert first_job_id(build_topology(tmp_path / "c", 65535)) < 67_108_863


def test_the_blahp_status_helper_is_mended_once_and_left_alone_after(tmp_path) -> None:
    module = tmp_path / BLAHP_CONFIG_MODULE
    module.parent.mkdir(parents=True)
    module.write_text("class P:\n    def __init__(self):\n        self.readfp(vfile)\n")
    assert fix_blahp(tmp_path) is True
    assert "self.read_file(vfile)" in module.read_text() and "readfp" not in module.read_text()
    assert fix_blahp(tmp_path) is False
    assert fix_blahp(tmp_path / "elsewhere") is False


def test_the_hpc_entry_asks_slurm_for_a_whole_node_of_the_lab_cluster(topology) -> None:
    entry = FactoryConfig.model_validate(factory_config(topology)).entries["hpc"]
    assert (entry.cpus_per_pilot, entry.memory_mb, entry.grid_resource) == (2, 1000, "batch slurm")
    assert entry.attributes["GLIDEIN_Site"] == topology.hpc.glidein_site


def test_the_multinode_entry_asks_slurm_for_every_node_and_its_glidein_for_a_startd_on_each(topology) -> None:
    hpc = topology.hpc
    factory = FactoryConfig.model_validate(factory_config(topology))
    entry = factory.entries[hpc.multinode_entry]
    assert entry.attributes["GLIDEIN_Site"] == hpc.multinode_site != factory.entries["hpc"].attributes["GLIDEIN_Site"]
    assert (entry.attributes["GLIDEIN_Nodes"], entry.attributes["GLIDEIN_CPUS"]) == (2, hpc.cpus_per_node)
    assert entry.limits.max_pilots == 1  # a pilot takes the whole cluster
    pilot = PilotSpec(
        frontend="lab-vo",
        group="main",
        security_class="default",
        credential_id="cred",
        executable=Path("/glidein_startup.sh"),
        work_dir=Path("/work/pilots"),
        arguments=glidein_arguments(entry, None, PilotParams()),
    )
    submit = render_submit(factory, hpc.multinode_entry, entry, pilot)
    assert submit["grid_resource"] == "batch slurm" and submit["batch_queue"] == hpc.partition
    assert submit["batch_extra_submit_args"] == f"--nodes=2 --ntasks-per-node=1 --cpus-per-task={hpc.cpus_per_node}"
    assert int(submit["request_memory"]) <= hpc.memory_mb_per_node
    assert "--nodes 2" in submit["arguments"]
    assert f"--node-scratch {topology.work_dir}/node-scratch" in submit["arguments"]


def test_the_blahp_slurm_status_no_longer_reads_an_unreachable_slurmctld_as_completed(tmp_path) -> None:
    module = tmp_path / BLAHP_SLURM_STATUS
    module.parent.mkdir(parents=True)
    line = "    if jobid and (squeue_proc.returncode == 1 or squeue_proc.returncode == 0 and jobid not in result):\n"
    module.write_text(line)
    assert fix_blahp(tmp_path) is True
    mended = module.read_text()
    assert "returncode == 1 and 'Invalid job id' in squeue_out or squeue_proc.returncode == 0" in mended
    assert fix_blahp(tmp_path) is False and module.read_text() == mended


def test_a_slurmstepd_is_known_by_the_job_it_works_for() -> None:
    assert step_job_id(b"slurmstepd: [29718004.batch]\x00") == 29718004
    assert step_job_id(b"slurmstepd: [29718004.0]\x00") == 29718004
    assert step_job_id(b"slurmstepd: [29718004.extern]") == 29718004
    assert step_job_id(b"/usr/sbin/slurmd\x00-D") is None
    assert step_job_id(b"slurmstepd: [x.batch]") is None

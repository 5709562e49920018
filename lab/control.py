"""Bring the lab up, look at it, and take it down.

`up` writes every config from the topology, starts one condor_master per
instance and waits until each daemon has advertised itself; `down` stops
exactly the processes the lab started. A small state file remembers which
runtime and masters belong to the lab, so `status` and `down` work from
any later process.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, TypeGuard

import classad2
import htcondor2
import jinja2

from updraft.atomicwrite import write_atomically
from updraft.condor import Collector, use_client_config
from updraft.errors import CondorError, LabError
from updraft.lab import cloud, loginnode, slurm
from updraft.lab.runtime import ChrootRuntime, HostRuntime, Runtime
from updraft.lab.topology import (
    CLIENT_ROLES,
    FACTORY,
    FRONTEND,
    LOOPBACK,
    OPERATOR,
    PILOT,
    PILOT_OWNERS,
    UID_DOMAIN,
    Instance,
    Program,
    Topology,
    access_settings,
)
from updraft.lab.tsdb import answers, create_database, influxdb_config
from updraft.secretfiles import private_dir

log = logging.getLogger(__name__)

STATE_FILE = "lab.json"
LOCAL_SUBDIRS = ("log", "spool", "execute", "lock", "run")
WORKER_CPUS = 4
WORKER_MEMORY_MB = 4096


@dataclass(frozen=True)
class DaemonStatus:
    instance: str
    role: str
    ad_type: str
    name: str | None
    collector: str
    present: bool


def _templates() -> jinja2.Environment:
    loader = jinja2.PackageLoader("updraft.lab", "templates")
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_configs(topology: Topology, release_dir: str = "/usr", influxdb: bool = True) -> dict[Path, str]:
    """Every config file of the lab, by path: pure, so it is tested without daemons.

    `influxdb`: whether the runtime has InfluxDB to run for the lab's monitoring.
    """
    env = _templates()
    identities = {
        "operator": OPERATOR.identity,
        "factory": FACTORY.identity,
        "frontend": FRONTEND.identity,
        "pilot": PILOT.identity,
    }
    files = {
        topology.common_config: env.get_template("common.config.j2").render(
            release_dir=release_dir, uid_domain=UID_DOMAIN, secrets_dir=topology.secrets_dir, **identities
        ),
        topology.client_config: env.get_template("client.config.j2").render(
            client_config=topology.client_config,
            vo_collector=topology.vo.collector,
            uid_domain=UID_DOMAIN,
            tokens_dir=topology.tokens_dir,
        ),
    }
    for role in CLIENT_ROLES:
        if role != OPERATOR:
            files[topology.role_config(role)] = env.get_template("role-client.config.j2").render(
                role=role, client_config=topology.client_config, tokens_dir=topology.role_tokens(role)
            )
    instance_template = env.get_template("instance.config.j2")
    for instance in topology.instances:
        files[master_config(topology, instance)] = instance_template.render(
            gahp_tokens_dir=topology.gahp_tokens_dir,
            **identities,
            instance=instance,
            access=access_settings(instance),
            local_dir=topology.instance_dir(instance),
            staging_dir=topology.staging_dir,
            staging_server=topology.staging_server,
            common_config=topology.common_config,
            worker_cpus=WORKER_CPUS,
            worker_memory_mb=WORKER_MEMORY_MB,
            influxdb=influxdb,
            influx_config=topology.influx_config,
            slurm_conf=topology.slurm_conf,
            programs=_programs(topology, instance),
        )
    files[topology.staging_server] = staging_server_source()
    files[topology.ec2_api_script] = ec2_api_source()
    files[topology.slurm_conf] = slurm.render_slurm_conf(topology)
    files[topology.slurm_dir / "cgroup.conf"] = slurm.render_cgroup_conf()
    if influxdb and topology.factory.influx_port:
        port = topology.factory.influx_port
        files[topology.influx_config] = influxdb_config(port, port + 1, topology.influx_data_dir)
    return files


def _programs(topology: Topology, instance: Instance) -> list[Program]:
    """The plain programs an instance's master runs: the HPC site's Slurm, the cloud's EC2 API."""
    if instance == topology.hpc.instance:
        return slurm.programs(topology)
    if instance == topology.cloud.instance:
        return cloud.programs(topology)
    return []


def ec2_api_source() -> str:
    """The EC2 API's launcher, as the package ships it (the root runs it with its own Python and moto)."""
    return importlib.resources.files("updraft.lab").joinpath("ec2_api.py").read_text()


def staging_server_source() -> str:
    """The staging web server's script, as the package ships it (the daemons' root has no Updraft)."""
    return importlib.resources.files("updraft.lab").joinpath("staging_server.py").read_text()


def has_influxdb(runtime: Runtime) -> bool:
    """The chroot runtime's root has it (ROOT_RECIPE 3); an operator's host may not."""
    return (runtime.root / "usr/bin/influxd").is_file()


def master_config(topology: Topology, instance: Instance) -> Path:
    return topology.instance_dir(instance) / "condor_config"


def _pid_file(topology: Topology, instance: Instance) -> Path:
    return topology.instance_dir(instance) / "run" / "master.pid"


def _prepare_dirs(topology: Topology, runtime: Runtime) -> None:
    condor_uid, condor_gid = runtime.ids("condor")
    for instance in topology.instances:
        for sub in LOCAL_SUBDIRS:
            path = topology.instance_dir(instance) / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, condor_uid, condor_gid)
            _adopt_stale_files(path, condor_uid, condor_gid)
    topology.work_dir.mkdir(parents=True, exist_ok=True)
    topology.work_dir.chmod(0o1777)
    topology.staging_dir.mkdir(parents=True, exist_ok=True)
    for private in (topology.secrets_dir, *(topology.role_tokens(r) for r in CLIENT_ROLES)):
        private_dir(private)
    for role in PILOT_OWNERS:
        private_dir(topology.gahp_tokens_dir / role.user, runtime.ids(role.user))


def _adopt_stale_files(folder: Path, uid: int, gid: int) -> None:
    """Give the condor user back files a previous HTCondor root's condor user left.

    A rebuilt root may give `condor` another uid; the daemons then cannot
    open their own old logs and spool ("Cannot open log file"). Files of
    root stay root's: the master writes some of them itself.
    """
    for path in (folder, *folder.rglob("*")):
        owner = path.lstat().st_uid
        if owner not in (0, uid):
            os.lchown(path, uid, gid)


def _ensure_credentials(topology: Topology, runtime: Runtime) -> None:
    """The pool signing key (once per lab folder) and a token for each role that is not a daemon.

    The pilots' tokens are not made here: the frontend mints them.
    """
    env = {"CONDOR_CONFIG": str(master_config(topology, topology.vo))}
    key = topology.secrets_dir / "POOL"
    if not key.exists():
        password = secrets.token_urlsafe(32)
        runtime.run(
            ["condor_store_cred", "-f", str(key), "-i", "-", "add", "-c"],
            env,
            "creating the pool signing key",
            password,
        )
    for role in CLIENT_ROLES:
        token = topology.role_tokens(role) / role.user
        runtime.run(
            ["condor_token_create", "-identity", role.identity, "-key", "POOL", "-file", str(token)],
            env,
            f"creating the {role.user} token",
        )
    for role in PILOT_OWNERS:  # written as root into the user's folder: never through a planted symlink
        content = (topology.role_tokens(role) / role.user).read_bytes()
        write_atomically(topology.gahp_tokens_dir / role.user / role.user, content, 0o600, runtime.ids(role.user))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None) -> TypeGuard[int]:
    """Whether `pid` names a live process (None never does)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_master(topology: Topology, runtime: Runtime, instance: Instance) -> None:
    pid_file = _pid_file(topology, instance)
    if _alive(_read_pid(pid_file)):
        log.info("%s master already running", instance.name)
        return
    env = {"CONDOR_CONFIG": str(master_config(topology, instance))}
    runtime.run(["condor_master", "-pidfile", str(pid_file)], env, f"starting the {instance.role} master")


class LabState(TypedDict):
    """What `up` leaves in the lab folder for the commands that come after it."""

    runtime: str
    root: str
    base_port: int


def _save_state(topology: Topology, runtime: Runtime) -> None:
    state: LabState = {"runtime": runtime.kind, "root": str(runtime.root), "base_port": topology.base_port}
    write_atomically(topology.base_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def load_state(base_dir: Path) -> LabState | None:
    """The state `up` left, or None when the lab was never brought up here."""
    try:
        state: LabState = json.loads((base_dir / STATE_FILE).read_text())
        return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LabError(f"{base_dir / STATE_FILE} is unreadable: {err}") from err


def runtime_from_state(state: LabState) -> Runtime:
    return HostRuntime() if state["runtime"] == "host" else ChrootRuntime(Path(state["root"]))


def up(topology: Topology, runtime: Runtime, timeout: float = 90.0) -> list[DaemonStatus]:
    """Start every daemon of the topology and wait until each has advertised."""
    topology.base_dir.mkdir(parents=True, exist_ok=True)
    runtime.share(topology.base_dir)
    runtime.ensure_user(FACTORY.user, FACTORY.uid)
    _prepare_dirs(topology, runtime)
    influxdb = has_influxdb(runtime)
    slurm.write_files(topology, runtime)
    for path, text in render_configs(topology, influxdb=influxdb).items():
        write_atomically(path, text)
    _ensure_credentials(topology, runtime)
    cloud.write_credentials(topology, runtime)
    _save_state(topology, runtime)
    use_client_config(topology.client_config)
    for instance in topology.instances:
        _start_master(topology, runtime, instance)
    if isinstance(runtime, ChrootRuntime):  # on an operator's host, its users and sshd are its own
        loginnode.start(topology, runtime)
    statuses = wait_ready(topology, timeout)
    slurm.wait_ready(topology, runtime, timeout)
    _register_operator(topology)
    if influxdb:
        _ensure_database(topology, timeout)
    return statuses


def _register_operator(topology: Topology) -> None:
    """Make the operator a user the factory schedd knows, so it may clean the factory's queue.

    HTCondor 23.9's schedds act only for users they keep a record of: a queue
    super user who never submitted there is "anonymous" and refused. One
    held job, removed at once, creates the record.
    """
    schedd = Collector(topology.wms.collector).schedd(topology.factory.schedd)
    cluster = schedd.submit({"executable": "/bin/true", "hold": "true", "+UpdraftLabRegistration": "true"})
    schedd.remove(f"ClusterId == {cluster}", "the lab operator's registration")


LAB_DATABASE = "updraft"
"""The InfluxDB database the lab's writers fill and Grafana reads."""


def _ensure_database(topology: Topology, timeout: float) -> None:
    """InfluxDB 1.x drops writes to a database that does not exist: create it once it answers."""
    deadline = time.monotonic() + timeout
    while not answers(f"{topology.influx_url}/ping"):
        if time.monotonic() > deadline:
            raise LabError(f"the lab's InfluxDB at {topology.influx_url} did not answer within {timeout:.0f} s")
        time.sleep(0.5)
    create_database(topology.influx_url, LAB_DATABASE)


def wait_ready(topology: Topology, timeout: float) -> list[DaemonStatus]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = status(topology)
        missing = [s for s in statuses if not s.present]
        if not missing:
            return statuses
        if time.monotonic() > deadline:
            names = ", ".join(f"{s.instance}/{s.ad_type}" for s in missing)
            raise LabError(
                f"lab not ready after {timeout:g} s; missing: {names}; logs in {topology.base_dir}/daemons/*/log"
            )
        time.sleep(1.0)


def _advertised(collector: str, timeout: float) -> set[tuple[str, str]]:
    try:
        ads = Collector(collector, timeout=timeout).query(htcondor2.AdType.Any, "true", ["MyType", "Name"])
    except CondorError as err:
        log.info("%s", err)
        return set()
    return {(str(ad.get("MyType")), str(ad.get("Name"))) for ad in ads}


def status(topology: Topology, timeout: float = 5.0) -> list[DaemonStatus]:
    """Which expected daemons have advertised to their collector right now."""
    use_client_config(topology.client_config)
    seen = {port: _advertised(f"127.0.0.1:{port}", timeout) for port in {i.collector_port for i in topology.instances}}
    statuses = [
        _daemon_status(instance, ad_type, name, seen[instance.collector_port])
        for instance in topology.instances
        for ad_type, name in instance.expected_ads()
    ]
    return statuses + _login_status(topology) + _cloud_status(topology)


def _login_status(topology: Topology) -> list[DaemonStatus]:
    """The login node's sshd, when the lab runs one (`up` wrote its config): up if it shows its banner."""
    node = topology.login_node
    if not node.sshd_config.is_file():
        return []
    address = f"{LOOPBACK}:{node.port}"
    return [DaemonStatus("login", "HPC login node", "sshd", node.ssh_host, address, loginnode.answers(node))]


def _cloud_status(topology: Topology) -> list[DaemonStatus]:
    """The cloud's EC2 API: up if moto's status page answers."""
    address = f"{LOOPBACK}:{topology.cloud.api_port}"
    return [DaemonStatus("cloud", "EC2 API", "EC2API", topology.cloud.endpoint, address, cloud.answers(topology))]


def _daemon_status(instance: Instance, ad_type: str, name: str | None, seen: set[tuple[str, str]]) -> DaemonStatus:
    present = any(t == ad_type and (name is None or n == name) for t, n in seen)
    return DaemonStatus(instance.name, instance.role, ad_type, name, instance.collector, present)


def stop_instance(topology: Topology, name: str, grace: float = 20.0) -> None:
    """Stop one instance's master and daemons (a site's CE, the WMS collector...), for fault tests."""
    pid = _read_pid(_pid_file(topology, topology.instance(name)))
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        _wait_gone([pid], grace)
    if _alive(pid):
        raise LabError(f"{name} master (pid {pid}) still running after {grace:g} s")


def start_instance(topology: Topology, runtime: Runtime, name: str, timeout: float = 60.0) -> None:
    """Start one instance again and wait until it has advertised."""
    _start_master(topology, runtime, topology.instance(name))
    wait_ready(topology, timeout)


def switch_daemon(topology: Topology, name: str, subsystem: str, on: bool) -> None:
    """Turn one daemon under an instance's master off or on (the factory host's INFLUXDB, say).

    The master keeps an off daemon off, instead of restarting it as it
    would after a crash: what an outage of one service looks like.
    """
    instance = topology.instance(name)
    command = htcondor2.DaemonCommand.DaemonOn if on else htcondor2.DaemonCommand.DaemonOff
    use_client_config(topology.client_config)  # the lab's, whatever CONDOR_CONFIG the caller has
    try:
        # The full ad: a location ad from locate() lacks the type send_command needs.
        masters = htcondor2.Collector(instance.collector).query(
            htcondor2.AdType.Master, f"Name == {classad2.quote(instance.master_name)}"
        )
        if not masters:
            raise LabError(f"the {name} master is not in its collector {instance.collector}")
        htcondor2.send_command(masters[0], command, subsystem)
    except htcondor2.HTCondorException as err:
        raise LabError(f"could not turn {subsystem} {'on' if on else 'off'} on {name}: {err}") from err


def down(topology: Topology, runtime: Runtime, grace: float = 20.0) -> list[int]:
    """Stop the lab's masters, then anything of the lab left behind; returns pids killed hard."""
    masters = [p for p in (_read_pid(_pid_file(topology, i)) for i in topology.instances) if _alive(p)]
    if masters:
        slurm.cancel_all(topology, runtime)  # a job's slurmstepd outlives its slurmd
    for pid in masters:
        os.kill(pid, signal.SIGTERM)
    _wait_gone(masters, grace)
    loginnode.stop(topology)
    leftovers = lab_processes(topology, runtime)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    _wait_gone(leftovers, 5.0)
    runtime.unshare(topology.base_dir)
    (topology.base_dir / STATE_FILE).unlink(missing_ok=True)
    return leftovers


def _wait_gone(pids: Iterable[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pids = list(pids)
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


def lab_processes(topology: Topology, runtime: Runtime) -> list[int]:
    """Every process the lab started that is still running."""
    own = os.getpid()
    pids = (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    condor = [pid for pid in pids if pid != own and runtime.owns_process(pid, topology.base_dir)]
    # sshd overwrites the environment that marks the others; its listener's pid file names it.
    # A Slurm job's slurmstepd (and the pilot below it) is named by its job id.
    unmarked = [*loginnode.processes(topology), *slurm.job_processes(topology)]
    return condor + sorted({pid for pid in unmarked if pid not in condor and pid != own})


def purge(base_dir: Path) -> None:
    """Delete the lab folder, but never while a lab still uses (and mounts) it."""
    if load_state(base_dir) is not None:
        raise LabError(f"the lab in {base_dir} is still up: `updraft lab down` first")
    shutil.rmtree(base_dir, ignore_errors=True)

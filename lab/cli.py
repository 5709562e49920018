"""`updraft lab`: a real HTCondor grid lab on 127.0.0.1.

The lab folder (default /var/tmp/updraft-lab, or $UPDRAFT_LAB_DIR) holds
every config, log, key and work file; the HTCondor root is cached in
$UPDRAFT_CACHE (default /var/cache/updraft) and reused across labs.
"""

from __future__ import annotations

from pathlib import Path

import click

from updraft.cliutil import UpdraftGroup, check_name, from_group, group_option
from updraft.errors import LabError
from updraft.lab import control, loginnode, slurm
from updraft.lab.labconfig import write_component_configs
from updraft.lab.runtime import ChrootRuntime, choose_runtime
from updraft.lab.topology import DEFAULT_BASE_PORT, Topology, build_topology

DEFAULT_LAB_DIR = Path("/var/tmp/updraft-lab")
DEFAULT_CACHE = Path("/var/cache/updraft")

lab_dir_option = click.option(
    "--dir",
    "lab_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_LAB_DIR,
    envvar="UPDRAFT_LAB_DIR",
    show_default=True,
    callback=from_group,
    help="Lab folder: configs, logs, keys, work files [env UPDRAFT_LAB_DIR].",
)


def _existing_topology(lab_dir: Path) -> Topology:
    state = control.load_state(lab_dir.absolute())
    if state is None:
        raise LabError(f"no lab in {lab_dir}: run `updraft lab up` first")
    return build_topology(lab_dir.absolute(), state["base_port"])


@click.group(cls=UpdraftGroup)
@group_option(
    "--dir",
    "lab_dir",
    param_type=click.Path(file_okay=False, path_type=Path),
    help_text="Lab folder for the command that follows (a command's own --dir wins).",
)
def lab() -> None:
    """A real HTCondor grid lab on this machine (127.0.0.1 only).

    \b
    VO pool         collector, negotiator, user schedds (vo-schedd@lab, vo-schedd2@lab)
    WMS collector   where factories and frontends exchange ads
    factory schedd  submits grid-universe pilots (factory@lab)
    site1, site2    an HTCondor-C CE (ce@siteN.lab) and a worker each
    hpc             a Slurm cluster (slurmctld, slurmd on node1 and node2), reached through the blahp
    cloud           an EC2 API (moto) the grid manager starts and terminates instances through
    """


@lab.command()
@lab_dir_option
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    default=DEFAULT_BASE_PORT,
    show_default=True,
    help="VO collector port; the WMS collector and sites use the next ones.",
)
@click.option(
    "--runtime",
    "runtime_choice",
    type=click.Choice(["auto", "host", "root"]),
    default="auto",
    show_default=True,
    help="host: HTCondor installed here; root: Debian's HTCondor in a cached debootstrap root; "
    "auto: host if installed.",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    envvar="UPDRAFT_CACHE",
    show_default=True,
    help="Where the HTCondor root is built once and reused [env UPDRAFT_CACHE].",
)
@click.option(
    "--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for every daemon to advertise."
)
def up(lab_dir: Path, base_port: int, runtime_choice: str, cache: Path, timeout: float) -> None:
    """Start the lab (idempotent) and wait until every daemon has advertised."""
    state = control.load_state(lab_dir.absolute())
    if state is not None and state["base_port"] != base_port:
        raise LabError(f"a lab on base port {state['base_port']} is already in {lab_dir}; `updraft lab down` it first")
    topology = build_topology(lab_dir.absolute(), base_port)
    # A running lab keeps the HTCondor it was started with.
    runtime = control.runtime_from_state(state) if state else choose_runtime(runtime_choice, cache.absolute())
    statuses = control.up(topology, runtime, timeout)
    click.echo(f"lab up in {topology.base_dir} ({runtime.kind} runtime, HTCondor from {runtime.root})")
    _print_statuses(statuses)
    click.echo(f"\nexport CONDOR_CONFIG={topology.client_config}")


@lab.command()
@lab_dir_option
@click.option("--keep", is_flag=True, envvar="KEEP", help="Leave the lab running at the end [env KEEP=1].")
@click.option("--timeout", type=float, default=900.0, show_default=True, help="Seconds the workload may take.")
def demo(lab_dir: Path, keep: bool, timeout: float) -> None:
    """Provision pilots for a real workload on the lab, showing progress, then summarize.

    Starts the factory and the frontend as services on a running lab
    (`updraft lab up` first), queues 49 jobs of nine shapes (two only the HPC
    site's Slurm accepts, one only the cloud, three no pilot can run), prints
    jobs and pilots every 2 s
    until every runnable job has finished and the pilots have retired, then
    stops the services (and the lab, unless --keep).
    """
    import signal
    import sys

    from updraft.lab.demo import run_demo

    topology = _existing_topology(lab_dir)
    # SIGTERM cleans up like Ctrl-C: the services are stopped, the demo's jobs removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        for line in run_demo(topology, click.echo, timeout):
            click.echo(line)
    finally:
        if not keep:
            state = control.load_state(topology.base_dir)
            if state is not None:
                control.down(topology, control.runtime_from_state(state))
                click.echo("lab down (KEEP=1 or --keep leaves it running)")


@lab.command()
@lab_dir_option
def status(lab_dir: Path) -> None:
    """Show each daemon of the lab and whether its collector sees it, and the Slurm nodes as Slurm
    reports them; exit 1 if any is missing."""
    topology = _existing_topology(lab_dir)
    statuses = control.status(topology)
    _print_statuses(statuses)
    slurm_problem = _print_slurm_nodes(topology)
    missing = sum(not s.present for s in statuses)
    if missing:
        raise LabError(f"{missing} of {len(statuses)} daemons are not advertising")
    if slurm_problem:
        raise LabError(slurm_problem)


def _print_slurm_nodes(topology: Topology) -> str | None:
    """The HPC site's nodes as `sinfo` sees them; what is wrong with the cluster, if anything."""
    state = control.load_state(topology.base_dir)
    if state is None:
        return "the lab was taken down"
    try:
        nodes = slurm.node_states(topology, control.runtime_from_state(state))
    except LabError as err:
        click.echo(f"{topology.hpc.name:<9} {'slurmctld':<13} {'-':<22} {'-':<16} NOT ANSWERING")
        return f"Slurm: {err}"
    for line in slurm.describe(topology.hpc, nodes):
        click.echo(line)
    down = [node for node in topology.hpc.nodes if not slurm.usable(nodes.get(node, "missing"))]
    return f"Slurm nodes not usable: {', '.join(down)}" if down else None


@lab.command()
@lab_dir_option
@click.option("--purge", is_flag=True, help="Also delete the lab folder (configs, logs, keys).")
def down(lab_dir: Path, purge: bool) -> None:
    """Stop exactly the processes the lab started and undo its mounts."""
    state = control.load_state(lab_dir.absolute())
    if state is None:
        click.echo(f"no lab running in {lab_dir}")
    else:
        topology = build_topology(lab_dir.absolute(), state["base_port"])
        killed = control.down(topology, control.runtime_from_state(state))
        click.echo(f"lab down ({len(killed)} process(es) needed SIGKILL)")
    if purge:
        control.purge(lab_dir.absolute())
        click.echo(f"removed {lab_dir}")


DAEMON_OPTION = click.option(
    "--daemon",
    default=None,
    metavar="SUBSYSTEM",
    help="Only this daemon of the instance (e.g. INFLUXDB, SCHEDD), through its master.",
)


@lab.command()
@lab_dir_option
@click.argument("instance")
@DAEMON_OPTION
def stop(lab_dir: Path, instance: str, daemon: str | None) -> None:
    """Stop one instance (vo, submit2, wms, factory, site1, site2, hpc, cloud, login), or one of its daemons (e.g.
    hpc's SLURMCTLD): a fault on demand."""
    topology = _existing_topology(lab_dir)
    _check_instance(topology, instance, daemon)
    if daemon:
        control.switch_daemon(topology, instance, daemon.upper(), on=False)
        click.echo(f"{daemon.upper()} on {instance} stopped")
        return
    if instance == LOGIN:  # the HPC login node's sshd, sessions and all: the SSH endpoint unreachable
        loginnode.stop(topology)
    else:
        control.stop_instance(topology, instance)
    click.echo(f"{instance} stopped")


@lab.command()
@lab_dir_option
@click.argument("instance")
@DAEMON_OPTION
def start(lab_dir: Path, instance: str, daemon: str | None) -> None:
    """Start one stopped instance (or daemon) again; an instance waits until the whole lab advertises."""
    topology = _existing_topology(lab_dir)
    _check_instance(topology, instance, daemon)
    if daemon:
        control.switch_daemon(topology, instance, daemon.upper(), on=True)
        click.echo(f"{daemon.upper()} on {instance} started")
        return
    state = control.load_state(topology.base_dir)
    if state is None:  # taken down since _existing_topology looked
        raise LabError(f"no lab in {lab_dir}: run `updraft lab up` first")
    runtime = control.runtime_from_state(state)
    if instance != LOGIN:
        control.start_instance(topology, runtime, instance)
    elif isinstance(runtime, ChrootRuntime):
        loginnode.start(topology, runtime)
    else:
        raise LabError("the HPC login node runs only in the lab's HTCondor root (--runtime root)")
    click.echo(f"{instance} started")


LOGIN = "login"
"""`lab stop|start login`: the HPC login node's sshd, which no condor_master runs."""


def _check_instance(topology: Topology, name: str, daemon: str | None) -> None:
    check_name(name, [*(i.name for i in topology.instances), LOGIN], "INSTANCE", "an instance of the lab")
    if name == LOGIN and daemon:
        raise LabError("the login node is one sshd: `lab stop login` takes no --daemon")


@lab.command()
@lab_dir_option
def env(lab_dir: Path) -> None:
    """Print the lab's addresses and write factory/frontend configs for it."""
    topology = _existing_topology(lab_dir)
    written = write_component_configs(topology)
    click.echo(f"# Updraft lab in {topology.base_dir}")
    click.echo(f"# VO collector   {topology.vo.collector}  (user schedd {topology.vo.schedd_name})")
    click.echo(f"# WMS collector  {topology.wms.collector}  (factory schedd {topology.factory.schedd_name})")
    for site in topology.sites:
        click.echo(f"# {site.name:<14} grid_resource = condor {site.ce_resource}")
    click.echo(f"# {topology.hpc.name:<14} grid_resource = batch slurm  (SLURM_CONF={topology.slurm_conf})")
    click.echo(f"# {topology.cloud.name:<14} grid_resource = ec2 {topology.cloud.endpoint}")
    if topology.influx_config.is_file():
        click.echo(f"# InfluxDB       {topology.influx_url}  (database {control.LAB_DATABASE}: the monitoring of both)")
    click.echo(f"export CONDOR_CONFIG={topology.client_config}")
    click.echo(f"export UPDRAFT_FACTORY_CONFIG={written['factory']}")
    click.echo(f"export UPDRAFT_FRONTEND_CONFIG={written['frontend']}")


def _print_statuses(statuses: list[control.DaemonStatus]) -> None:
    click.echo(f"{'instance':<9} {'daemon':<13} {'name':<22} {'collector':<16} state")
    for s in statuses:
        state = "up" if s.present else "MISSING"
        click.echo(f"{s.instance:<9} {s.ad_type:<13} {s.name or '-':<22} {s.collector:<16} {state}")

"""What the lab is made of, as plain data.

The topology is pure: names, ports and daemon lists, with no I/O, so the
rest of the lab (and the configs `lab env` writes) derive from one place
and the unit tests can check it without daemons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

UID_DOMAIN = "lab"
"""Also the TRUST_DOMAIN: the issuer of every lab token."""
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Role:
    """One identity of the lab: whose token a process presents, and where that token lives."""

    user: str
    """The token's identity is ``<user>@lab``; a role that owns jobs is also a Unix user in the root."""
    uid: int | None = None
    """Set for roles whose jobs run (the Unix user HTCondor switches to)."""

    @property
    def identity(self) -> str:
        return f"{self.user}@{UID_DOMAIN}"


OPERATOR = Role("updraft", 4242)
"""The lab's users and operator: submits the VO's jobs, runs the tests and the demo (a queue super user)."""
FACTORY = Role("factory", 4243)
"""The factory: advertises to the WMS collector and owns the pilot jobs (its grid manager runs as it)."""
FRONTEND = Role("frontend")
"""The frontend: reads the VO pool and advertises requests to the WMS collector."""
PILOT = Role("pilot")
"""The pilots' startds, with the tokens the frontend mints: may advertise a startd to the VO pool, nothing else."""
CLIENT_ROLES = (OPERATOR, FACTORY, FRONTEND)
PILOT_OWNERS = (FACTORY, OPERATOR)
"""Who owns grid jobs in the factory schedd: the factory, and the operator's hand-made pilots in the tests."""
DEFAULT_BASE_PORT = 29618

READ, WRITE, DAEMON, ADVERTISE_STARTD = "READ", "WRITE", "DAEMON", "ADVERTISE_STARTD"


@dataclass(frozen=True)
class Grant:
    """One access level one daemon of an instance gives some roles, beyond what the daemons and the operator have.

    Every lab daemon allows the daemons (``condor@*``) everything and the
    operator all but DAEMON (common.config.j2); each other role is allowed
    only what a Grant names, on that daemon alone (``ALLOW_<level>_<subsystem>``).
    """

    subsystem: str
    level: str
    roles: tuple[Role, ...]
    deny: bool = False
    """A refusal instead (``DENY_<level>_<subsystem>``): for a level another one implies."""

    @property
    def setting(self) -> str:
        return f"{'DENY' if self.deny else 'ALLOW'}_{self.level}_{self.subsystem}"


@dataclass(frozen=True)
class Instance:
    """One condor_master with its own config, local dir and daemons.

    Each instance stands for one host of a real deployment; keeping them
    separate lets a test stop one site's CE or the WMS collector alone.
    """

    name: str
    role: str
    daemons: tuple[str, ...]
    collector_port: int
    schedd_name: str | None = None
    startd_name: str | None = None
    grants: tuple[Grant, ...] = ()
    """What roles other than the daemons and the operator may do on this instance's daemons."""
    web_port: int | None = None
    """The staging web server's port, on the instance that serves pilots their files (the factory host)."""
    job_machine_attrs: tuple[str, ...] = ()
    """A user schedd's SYSTEM_JOB_MACHINE_ATTRS: the slot attributes it copies into every job it starts
    (as MachineAttr<name>0), which tell the frontend the entry a restarted job last ran on."""
    influx_port: int | None = None
    """InfluxDB's HTTP port, where the lab's factory and frontend write their monitoring (the factory host);
    its RPC service takes the next port."""

    @property
    def collector(self) -> str:
        return f"{LOOPBACK}:{self.collector_port}"

    @property
    def runs_collector(self) -> bool:
        return "COLLECTOR" in self.daemons

    @property
    def master_name(self) -> str:
        return f"{self.name}@{UID_DOMAIN}"

    @property
    def schedd(self) -> str:
        """The name of this instance's schedd; ValueError for an instance that runs none."""
        if self.schedd_name is None:
            raise ValueError(f"the {self.name} instance runs no schedd")
        return self.schedd_name

    def expected_ads(self) -> tuple[tuple[str, str | None], ...]:
        """(ad type, name) pairs this instance's daemons advertise to its collector.

        Collectors and negotiators name themselves after the host, which we
        do not control, so for them any ad of the type counts (None).
        """
        ads: list[tuple[str, str | None]] = [("DaemonMaster", self.master_name)]
        if self.runs_collector:
            ads.append(("Collector", None))
        if "NEGOTIATOR" in self.daemons:
            ads.append(("Negotiator", None))
        if self.schedd_name:
            ads.append(("Scheduler", self.schedd_name))
        if self.startd_name:
            ads.append(("StartD", self.startd_name))
        return tuple(ads)


@dataclass(frozen=True)
class Site:
    """A grid site: an HTCondor-C CE in front of its own small batch pool."""

    name: str
    glidein_site: str
    instance: Instance

    @property
    def ce_resource(self) -> str:
        """The `grid_resource` text after `condor` that reaches this CE."""
        return f"{self.instance.schedd_name} {self.instance.collector}"


@dataclass(frozen=True)
class HpcSite:
    """An HPC centre without a CE: a Slurm cluster of two nodes, reached through the blahp.

    Its `instance` is a condor_master that runs munged, slurmctld and one
    slurmd per node as plain programs, so the lab starts, stops and
    restarts them like any other daemon, and a test can stop slurmctld alone.
    """

    name: str
    glidein_site: str
    instance: Instance
    ctld_port: int
    node_ports: tuple[int, ...]
    ssh_port: int
    """The login node's sshd, for submission over SSH (BOSCO style)."""
    cpus_per_node: int = 2
    memory_mb_per_node: int = 2000
    partition: str = "batch"
    multinode_entry: str = "hpc-2node"
    """The factory entry whose pilots take every node of the cluster at once (one Slurm job)."""
    multinode_site: str = "HPC2N"
    """Its GLIDEIN_Site, so a job shape can ask for the multi-node pilots alone."""

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(f"node{index}" for index in range(1, len(self.node_ports) + 1))


@dataclass(frozen=True)
class Program:
    """A plain (non-DaemonCore) program an instance's master runs in the foreground, like a daemon."""

    name: str
    executable: str
    args: str
    environment: str = ""
    """The master's ``<NAME>_ENVIRONMENT`` (``NAME=value`` words), empty for none."""


@dataclass(frozen=True)
class CloudSite:
    """A cloud provider: an EC2 API endpoint (moto, lab/ec2_api.py) run as a plain program by its own master.

    It boots nothing: a test takes an instance's user data from the API and
    runs the VM's bootstrap with it in the lab's root, standing in for the VM.
    """

    name: str
    glidein_site: str
    instance: Instance
    api_port: int
    region: str = "us-east-1"
    image: str = "ami-12c6146b"
    """An image moto knows (it lists Amazon's public images of its time; an unknown id only warns)."""
    instance_type: str = "t3.medium"
    """Two vCPUs, like the lab's other pilots."""

    @property
    def endpoint(self) -> str:
        """The entry's ``resource``: ec2_gahp signs for the service and region it reads in the host name
        (``ec2.<region>``), and names under ``localhost`` are loopback (RFC 6761; curl resolves them)."""
        return f"http://ec2.{self.region}.localhost:{self.api_port}/"


SLURM_PROGRAMS = ("MUNGED", "SLURMCTLD")
"""The HPC instance's programs besides one SLURMD_<NODE> per node (lab/slurm.py defines them)."""


@dataclass(frozen=True)
class LoginNode:
    """The HPC site's login node: an sshd of its own where factories log in as an unprivileged user.

    The site's batch system is reached through it the way factories reach
    HPC centres without a CE: ``grid_resource = batch slurm <ssh_host>``.
    """

    dir: Path
    """Its sshd config, host key, pid file and log (in the lab folder)."""
    port: int
    user: str = "hpc"
    uid: int = 4250

    @property
    def ssh_host(self) -> str:
        """What follows the batch system in `grid_resource` (remote_gahp's ``user@host:port``)."""
        return f"{self.user}@{LOOPBACK}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How ssh names this endpoint in known_hosts (a non-standard port goes in brackets)."""
        return f"[{LOOPBACK}]:{self.port}"

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def pid_file(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "sshd.log"


@dataclass(frozen=True)
class Topology:
    """The whole lab: VO pool, WMS collector, factory schedd and the sites."""

    base_dir: Path
    base_port: int
    vo: Instance
    submit2: Instance
    wms: Instance
    factory: Instance
    sites: tuple[Site, ...]
    hpc: HpcSite
    cloud: CloudSite

    @property
    def instances(self) -> tuple[Instance, ...]:
        """Collectors first, so daemons find their collector when they start; Slurm before the factory."""
        sites = (*(s.instance for s in self.sites), self.hpc.instance, self.cloud.instance)
        return (self.vo, self.submit2, self.wms, *sites, self.factory)

    def instance(self, name: str) -> Instance:
        for instance in self.instances:
            if instance.name == name:
                return instance
        raise KeyError(name)

    @property
    def user_schedds(self) -> tuple[str, ...]:
        """Where VO users queue jobs: two schedds, so one can fail while the other works."""
        return (self.vo.schedd, self.submit2.schedd)

    def instance_dir(self, instance: Instance) -> Path:
        return self.base_dir / "daemons" / instance.name

    @property
    def work_dir(self) -> Path:
        """Shared by host and daemons at the same path: submit files, sandboxes, logs."""
        return self.base_dir / "work"

    @property
    def secrets_dir(self) -> Path:
        return self.base_dir / "secrets"

    @property
    def tokens_dir(self) -> Path:
        return self.base_dir / "tokens.d"

    @property
    def client_config(self) -> Path:
        """The operator's client configuration (`lab env`'s CONDOR_CONFIG)."""
        return self.base_dir / "client.config"

    def role_config(self, role: Role) -> Path:
        """A role's client configuration: the operator's, presenting that role's token instead."""
        return self.client_config if role == OPERATOR else self.base_dir / f"client-{role.user}.config"

    def role_tokens(self, role: Role) -> Path:
        """The folder holding a role's token (0700)."""
        return self.tokens_dir if role == OPERATOR else self.base_dir / f"tokens-{role.user}.d"

    @property
    def gahp_tokens_dir(self) -> Path:
        """Per pilot owner, the token its grid manager and GAHP present to the CEs (they run as that user,
        who must own it)."""
        return self.instance_dir(self.factory) / "gahp-tokens.d"

    @property
    def common_config(self) -> Path:
        return self.base_dir / "common.config"

    @property
    def staging_dir(self) -> Path:
        """Served over HTTP to pilots: ``factory/`` and ``frontend/`` staging areas below it."""
        return self.base_dir / "www"

    @property
    def staging_server(self) -> Path:
        """The staging web server's script (lab/staging_server.py), copied where the daemons' root sees it."""
        return self.base_dir / "staging_server.py"

    @property
    def staging_url(self) -> str:
        assert self.factory.web_port is not None
        return f"http://{LOOPBACK}:{self.factory.web_port}"

    @property
    def influx_url(self) -> str:
        assert self.factory.influx_port is not None
        return f"http://{LOOPBACK}:{self.factory.influx_port}"

    @property
    def influx_config(self) -> Path:
        return self.base_dir / "influxdb.conf"

    @property
    def influx_data_dir(self) -> Path:
        return self.base_dir / "influxdb"

    @property
    def ec2_api_script(self) -> Path:
        """The EC2 API's launcher (lab/ec2_api.py), copied where the daemons' root sees it."""
        return self.base_dir / "ec2_api.py"

    @property
    def ec2_credentials(self) -> tuple[Path, Path]:
        """The lab cloud's access key id and secret key files (moto takes any): the factory user's own, as the
        grid manager reads them as the pilots' owner."""
        folder = self.base_dir / "cloud"
        return folder / "access_key", folder / "secret_key"

    @property
    def slurm_dir(self) -> Path:
        """The Slurm cluster's config, munge key, state, spool and logs (lab/slurm.py)."""
        return self.base_dir / "slurm"

    @property
    def slurm_conf(self) -> Path:
        """What SLURM_CONF names for every Slurm command of this lab."""
        return self.slurm_dir / "slurm.conf"

    @property
    def login_node(self) -> LoginNode:
        """The HPC site's login node: its sshd's files in the lab folder, on the port the site reserves."""
        return LoginNode(self.base_dir / "login", self.hpc.ssh_port)

    @property
    def etc_dir(self) -> Path:
        """Where `lab env` writes factory and frontend configs for this lab."""
        return self.base_dir / "etc"


USER_SCHEDD_GRANTS = (Grant("SCHEDD", READ, (FRONTEND,)),)
"""A user schedd: its users (the operator, in the lab) submit; the frontend reads the queue; nobody else."""
USER_SCHEDD_MACHINE_ATTRS = ("GLIDEIN_Entry_Name", "GLIDEIN_Factory")
"""What a VO's schedds should record of the slot each job runs on (docs/job-restarts.md)."""
VO_GRANTS = (
    Grant("COLLECTOR", READ, (FRONTEND,)),
    Grant("COLLECTOR", ADVERTISE_STARTD, (PILOT,)),
    # HTCondor lets whoever may advertise a startd read the collector too; a pilot reads nothing.
    Grant("COLLECTOR", READ, (PILOT,), deny=True),
    *USER_SCHEDD_GRANTS,
)
"""The VO pool's collector (slots and schedds for the frontend; pilots advertise their startd), negotiator
(daemons only) and first user schedd."""
WMS_GRANTS = (Grant("COLLECTOR", READ, (FACTORY, FRONTEND)), Grant("COLLECTOR", DAEMON, (FACTORY, FRONTEND)))
"""Factories and frontends read and write each other's ads here."""
FACTORY_SCHEDD_GRANTS = (Grant("SCHEDD", READ, (FACTORY,)), Grant("SCHEDD", WRITE, (FACTORY,)))
"""The factory's queue and history: the factory's alone (and its operator's)."""
SITE_GRANTS = (
    Grant("COLLECTOR", READ, (FACTORY,)),
    Grant("SCHEDD", READ, (FACTORY,)),
    Grant("SCHEDD", WRITE, (FACTORY,)),
)
"""A site's CE: the factory's grid manager finds the CE schedd through its collector and submits pilots."""


def build_topology(base_dir: Path, base_port: int = DEFAULT_BASE_PORT, site_count: int = 2) -> Topology:
    """The standard lab: ports base_port (VO), +1 (WMS), +2... (one per site), then the staging web server,
    then InfluxDB (HTTP, RPC), then slurmctld, one slurmd per node, the HPC login node's sshd, and the
    cloud's EC2 API."""
    vo = Instance(
        "vo",
        "VO pool",
        ("COLLECTOR", "NEGOTIATOR", "SCHEDD"),
        base_port,
        schedd_name=f"vo-schedd@{UID_DOMAIN}",
        grants=VO_GRANTS,
        job_machine_attrs=USER_SCHEDD_MACHINE_ATTRS,
    )
    submit2 = Instance(
        "submit2",
        "second user schedd",
        ("SCHEDD",),
        base_port,
        schedd_name=f"vo-schedd2@{UID_DOMAIN}",
        grants=USER_SCHEDD_GRANTS,
        job_machine_attrs=USER_SCHEDD_MACHINE_ATTRS,
    )
    wms = Instance("wms", "WMS collector", ("COLLECTOR",), base_port + 1, grants=WMS_GRANTS)
    factory = Instance(
        "factory",
        "factory schedd",
        ("SCHEDD",),
        base_port + 1,
        schedd_name=f"factory@{UID_DOMAIN}",
        grants=FACTORY_SCHEDD_GRANTS,
        web_port=base_port + 2 + site_count,
        influx_port=base_port + 3 + site_count,
    )
    sites = tuple(_site(index, base_port + 1 + index) for index in range(1, site_count + 1))
    hpc = _hpc_site(base_port + 5 + site_count, wms_port=base_port + 1)
    cloud_instance = Instance("cloud", "cloud provider (EC2 API)", ("EC2API",), base_port + 1)
    cloud = CloudSite("cloud", "Cloud", cloud_instance, api_port=hpc.ssh_port + 1)
    return Topology(Path(base_dir), base_port, vo, submit2, wms, factory, sites, hpc, cloud)


def _hpc_site(first_port: int, wms_port: int, node_count: int = 2) -> HpcSite:
    """Slurm on `first_port` (slurmctld) and the ports after it (slurmds, then sshd); its master reports
    to the WMS collector, as a site's service host would to its operators' monitoring."""
    node_ports = tuple(first_port + 1 + index for index in range(node_count))
    programs = (*SLURM_PROGRAMS, *(f"SLURMD_NODE{index}" for index in range(1, node_count + 1)))
    instance = Instance("hpc", "HPC site (Slurm)", programs, wms_port)
    return HpcSite("hpc", "HPC", instance, first_port, node_ports, ssh_port=first_port + 1 + node_count)


def _site(index: int, port: int) -> Site:
    name = f"site{index}"
    instance = Instance(
        name,
        f"site {index} (CE + worker)",
        ("COLLECTOR", "NEGOTIATOR", "SCHEDD", "STARTD"),
        port,
        schedd_name=f"ce@{name}.{UID_DOMAIN}",
        startd_name=f"worker@{name}.{UID_DOMAIN}",
        grants=SITE_GRANTS,
    )
    return Site(name, f"Site{index}", instance)


BASE_LEVELS = (READ, WRITE, DAEMON)
"""Levels common.config.j2 sets for every daemon (the daemons, and for READ and WRITE the operator too):
a grant adds its roles to that list; any other level lists the grant's roles alone."""


def access_settings(instance: Instance) -> list[str]:
    """The instance's ``ALLOW_<level>_<subsystem>`` lines: its grants on top of the common lists."""
    lines = []
    for grant in instance.grants:
        base = [f"$(ALLOW_{grant.level})"] if grant.level in BASE_LEVELS and not grant.deny else []
        lines.append(f"{grant.setting} = {', '.join([*base, *(role.identity for role in grant.roles)])}")
    return lines

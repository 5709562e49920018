"""Factory and frontend configs that fit the lab, as `lab env` writes them.

They are derived from the topology, so they always name the lab's real
addresses, and they go through the same loaders as an operator's files.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

import updraft.glidein
from updraft.atomicwrite import write_atomically
from updraft.glidein.assemble import write_script
from updraft.lab.control import LAB_DATABASE
from updraft.lab.topology import FACTORY, FRONTEND, PILOT, UID_DOMAIN, Topology

FACTORY_NAME = "lab-factory"
FRONTEND_NAME = "lab-vo"


GLIDEIN_DIR = Path(updraft.glidein.__file__).parent
LAB_GLIDEIN = MappingProxyType(
    {
        "max_idle_seconds": 90,
        "idle_tail_seconds": 60,
        "failure_sleep_seconds": 10,
        "shutdown_margin_seconds": 30,
        "retire_spread_seconds": 30,
    }
)
"""Short lifetimes, so lab pilots come and go within a test."""


def lab_glidein(topology: Topology) -> Path:
    """Where `lab env` copies the glidein: inside the lab folder, which the daemons see too."""
    return topology.work_dir / "pilot" / "glidein_startup.sh"


def shared_config(topology: Topology) -> Path:
    """The lab's settings a pilot's startd uses, staged for the pilots by the frontend (`pilot_config`)."""
    return topology.etc_dir / "pilot-security.config"


PILOT_SETTINGS = frozenset(
    {
        # How the lab's hosts talk: loopback, fixed ports, no DNS.
        "NETWORK_INTERFACE",
        "BIND_ALL_INTERFACES",
        "USE_SHARED_PORT",
        "NO_DNS",
        "DEFAULT_DOMAIN_NAME",
        "UID_DOMAIN",
        "FILESYSTEM_DOMAIN",
        # What the sandbox forbids (namespaces, cgroups).
        "MOUNT_UNDER_SCRATCH",
        "USE_PID_NAMESPACES",
        "BASE_CGROUP",
        # Whose tokens to offer, and that every channel authenticates, encrypts and checks integrity.
        "TRUST_DOMAIN",
        "SEC_DEFAULT_AUTHENTICATION",
        "SEC_DEFAULT_AUTHENTICATION_METHODS",
        "SEC_DEFAULT_ENCRYPTION",
        "SEC_DEFAULT_INTEGRITY",
        "SEC_USE_FAMILY_SESSION",
        # The lab's fast intervals, as far as a master, a startd and a starter use them.
        "UPDATE_INTERVAL",
        "MASTER_UPDATE_INTERVAL",
        "STARTER_UPDATE_INTERVAL",
        "STARTD_CRON_AUTOPUBLISH",
        "MAX_DEFAULT_LOG",
    }
)
"""What the staged pool config may set: the pilot's own settings come from the glidein, and nothing
about the pool's secrets (signing key, password folder), its ALLOW/DENY lists, its super users or
other daemons' intervals has any business on a worker node."""


def pilot_config(pool_config: str) -> str:
    """The lines of the pool's daemon config (``NAME = value``) whose name is in PILOT_SETTINGS.

    A whitelist rather than a list of what to drop: a setting added to the
    pool later reaches pilots only when someone decides it should.
    """
    kept = ["# Written by `updraft lab env`: the lab's settings a pilot uses, and nothing else."]
    for line in pool_config.splitlines():
        name, sep, _value = line.partition("=")
        if sep and name.strip() in PILOT_SETTINGS:
            kept.append(line.strip())
    return "\n".join(kept) + "\n"


def lab_monitoring(topology: Topology, component: str) -> dict[str, Any]:
    """Every writer, at the lab's 10 s cycle: status pages to look at after a run, and the
    lab's InfluxDB (when the lab runs one) for Grafana."""
    writers: dict[str, Any] = {
        "json": {},
        "xml": {},
        "rrd": {"step_seconds": 10},
        "status_pages": {"refresh_seconds": 10},
    }
    if topology.influx_config.is_file():
        writers["influxdb"] = {
            "api": "v1",
            "url": topology.influx_url,
            "database": LAB_DATABASE,
            "timeout_seconds": 5.0,
        }
    return {"dir": str(topology.work_dir / component / "monitoring"), "writers": writers}


def factory_config(topology: Topology) -> dict[str, Any]:
    """A factory with one entry per site, open to the lab frontend, tuned for a fast lab."""
    entries = {
        site.name: {
            "grid_type": "condor",
            "resource": site.ce_resource,
            "attributes": {"GLIDEIN_Site": site.glidein_site, "GLIDEIN_CPUS": 2, "GLIDEIN_MaxMemMBs": 2048},
            "glidein": dict(LAB_GLIDEIN),
            "limits": {"max_pilots": 20, "max_idle": 5, "max_held": 5},
            "frontends": {FRONTEND_NAME: {"identity": FRONTEND.identity, "security_classes": ["default"]}},
            "submit": {"max_submits_per_cycle": 10, "cluster_size": 2},
            "holds": {"backoff_seconds": 1, "max_backoff_seconds": 5},
            "max_walltime_seconds": 3600,
        }
        for site in topology.sites
    }
    entries[topology.hpc.name] = hpc_entry(topology)
    entries[topology.hpc.multinode_entry] = multinode_entry(topology)
    entries[f"{topology.hpc.name}-ssh"] = hpc_ssh_entry(topology)
    entries[topology.cloud.name] = cloud_entry(topology)
    return {
        "name": FACTORY_NAME,
        "wms_collector": topology.wms.collector,
        "schedd": topology.factory.schedd_name,
        "work_dir": str(topology.work_dir / "factory"),
        "cycle_seconds": 10,
        "query_timeout_seconds": 10.0,
        "condor_config": str(topology.role_config(FACTORY)),
        # The factory runs as root on the host; its grid manager reads the pilot tokens as the factory user.
        "credentials": {"owner_uid": FACTORY.uid},
        "pilot": {"executable": str(lab_glidein(topology))},
        "monitoring": lab_monitoring(topology, "factory"),
        "staging": {
            "dir": str(topology.staging_dir / "factory"),
            "url": f"{topology.staging_url}/factory",
            "files": [{"source": str(GLIDEIN_DIR / "validate" / "check_worker.sh"), "kind": "validate"}],
        },
        "entries": entries,
    }


def lab_entries(topology: Topology) -> tuple[str, ...]:
    """The lab factory's entries, in the order its config lists them (the grid sites, the HPC site's, the cloud's)."""
    return tuple(factory_config(topology)["entries"])


def hpc_entry(topology: Topology) -> dict[str, Any]:
    """The HPC site's entry: local batch submission to the lab's Slurm through the blahp.

    The pilots run as Slurm jobs of the factory user on the lab's nodes, each
    node's two CPUs a pilot; its glidein finds HTCondor on the node (the root).
    """
    hpc = topology.hpc
    return {
        "grid_type": "batch",
        "resource": f"slurm@{hpc.name}.{UID_DOMAIN}",
        "batch_system": "slurm",
        "partition": hpc.partition,
        "walltime_seconds": 3600,
        "lifetime_margin_seconds": 60,
        "nodes": 1,
        "cpus_per_node": hpc.cpus_per_node,
        "memory_mb_per_node": hpc.memory_mb_per_node // 2,
        "attributes": {"GLIDEIN_Site": hpc.glidein_site},
        "glidein": dict(LAB_GLIDEIN),
        "limits": {"max_pilots": 4, "max_idle": 2, "max_held": 5},
        "frontends": {FRONTEND_NAME: {"identity": FRONTEND.identity, "security_classes": ["default"]}},
        "submit": {"max_submits_per_cycle": 2, "cluster_size": 1},
        "holds": {"backoff_seconds": 1, "max_backoff_seconds": 5},
    }


def multinode_entry(topology: Topology) -> dict[str, Any]:
    """The HPC site's multi-node entry: one Slurm job of every node per pilot, one startd per node.

    The same Slurm as `hpc_entry`, with its own GLIDEIN_Site so jobs can ask
    for it alone; the batch keys say the job's shape (the glidein's srun
    starts a startd on each node). One pilot at a time: it takes the whole
    cluster, which the `hpc` entry's pilots share.
    """
    hpc = topology.hpc
    return {
        **hpc_entry(topology),
        "nodes": len(hpc.nodes),
        "attributes": {"GLIDEIN_Site": hpc.multinode_site},
        # The lab's nodes share one host: a folder of the lab's own stands in for their local disks.
        "glidein": {**LAB_GLIDEIN, "node_scratch": str(node_scratch(topology))},
        "limits": {"max_pilots": 1, "max_idle": 1, "max_held": 5},
        "submit": {"max_submits_per_cycle": 1, "cluster_size": 1},
    }


def node_scratch(topology: Topology) -> Path:
    """Where the multi-node pilots' nodes keep job sandboxes and locks (`glidein.node_scratch`)."""
    return topology.work_dir / "node-scratch"


def hpc_ssh_entry(topology: Topology) -> dict[str, Any]:
    """The same Slurm reached the way factories reach most HPC centres: over SSH to its login node
    (``batch slurm hpc@127.0.0.1:<port>``, HTCondor's remote_gahp; see updraft.lab.loginnode).

    The pilots run as Slurm jobs of the login node's `hpc` user. Its GLIDEIN_Site is its own, so the
    demo's HPC shape keeps to the local entry; a job that names this site gets pilots over SSH.
    """
    entry = hpc_entry(topology)
    entry["resource"] = f"slurm@{topology.login_node.ssh_host}"
    entry["ssh_host"] = topology.login_node.ssh_host
    entry["attributes"] = {"GLIDEIN_Site": f"{topology.hpc.glidein_site}-SSH"}
    return entry


CLOUD_KEY_NAME = "updraft-lab"
"""The key pair the lab's instances name (moto does not check that it was registered)."""


def cloud_entry(topology: Topology) -> dict[str, Any]:
    """The cloud's entry: instances through the lab's EC2 API, two cores each, on-demand.

    The API boots nothing: a test (or the demo) plays the hypervisor, running
    each new instance's user data through the VM bootstrap in the lab's root
    (updraft.lab.vmhost). The lab frontend's pilot tokens live 4 h, within
    what the entry lets into user data.
    """
    cloud = topology.cloud
    access, secret = topology.ec2_credentials
    return {
        "grid_type": "ec2",
        "resource": cloud.endpoint,
        "cloud": {
            "image": cloud.image,
            "instance_type": cloud.instance_type,
            "key_name": CLOUD_KEY_NAME,
            "security_groups": ["default"],
            "tags": {"Project": "updraft-lab"},
            "access_key_file": str(access),
            "secret_key_file": str(secret),
            "max_token_lifetime_seconds": 6 * 3600,
        },
        "attributes": {"GLIDEIN_Site": cloud.glidein_site, "GLIDEIN_CPUS": 2, "GLIDEIN_MaxMemMBs": 2048},
        "glidein": dict(LAB_GLIDEIN),
        "limits": {"max_pilots": 4, "max_idle": 2, "max_held": 5},
        "frontends": {FRONTEND_NAME: {"identity": FRONTEND.identity, "security_classes": ["default"]}},
        "submit": {"max_submits_per_cycle": 2, "cluster_size": 1},
        "holds": {"backoff_seconds": 1, "max_backoff_seconds": 5},
        "max_walltime_seconds": 3600,
    }


def frontend_config(topology: Topology) -> dict[str, Any]:
    """A frontend for the lab's VO: jobs name the sites they accept in DESIRED_Sites."""
    group = {
        "job_constraint": "true",
        "match_expr": "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) "
        "&& MY.RequestCpus <= TARGET.GLIDEIN_CPUS",
        "match_index": {"job_attr": "DESIRED_Sites", "entry_attr": "GLIDEIN_Site"},
        "old_idle_seconds": 60,
        "min_pilot_lifetime_seconds": 120,
        "ramp_up_attenuation": 1.0,
        "reserve_idle": 0,
    }
    return {
        "name": FRONTEND_NAME,
        "vo_collector": topology.vo.collector,
        "wms_collector": topology.wms.collector,
        "schedds": list(topology.user_schedds),
        "cycle_seconds": 10,
        "query_timeout_seconds": 10.0,
        "condor_config": str(topology.role_config(FRONTEND)),
        "monitoring": lab_monitoring(topology, "frontend"),
        "identity": FRONTEND.identity,
        "pilot_tokens": {
            "signing_key_file": str(topology.secrets_dir / "POOL"),
            "trust_domain": UID_DOMAIN,
            "identity": PILOT.identity,
            "lifetime_seconds": 4 * 3600,
            "refresh_seconds": 3600,
        },
        "factories": {FACTORY_NAME: {"identity": FACTORY.identity}},
        "groups": {"main": group},
        "work_dir": str(topology.work_dir / "frontend"),
        "staging": {
            "dir": str(topology.staging_dir / "frontend"),
            "url": f"{topology.staging_url}/frontend",
            "files": [{"source": str(shared_config(topology)), "kind": "condor-config", "name": "pool.config"}],
        },
    }


def write_component_configs(topology: Topology) -> dict[str, Path]:
    """Write etc/factory.yaml and etc/frontend.yaml in the lab folder; returns their paths."""
    topology.etc_dir.mkdir(parents=True, exist_ok=True)
    _install_glidein(topology)
    scratch = node_scratch(topology)
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o1777)  # the pilots write there as the factory user, like /tmp
    write_atomically(shared_config(topology), pilot_config(topology.common_config.read_text()).encode(), 0o644)
    written = {}
    for component, content in (("factory", factory_config(topology)), ("frontend", frontend_config(topology))):
        path = topology.etc_dir / f"{component}.yaml"
        header = f"# Written by `updraft lab env` for the lab in {topology.base_dir}.\n"
        path.write_text(header + yaml.safe_dump(content, sort_keys=False))
        written[component] = path
    return written


def _install_glidein(topology: Topology) -> None:
    target = lab_glidein(topology)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_script(target)

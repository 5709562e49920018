"""The lab's stand-in for a cloud's hypervisor: it boots instances from the user data the factory sent.

The lab's EC2 API starts no machine. A real VM image runs the bootstrap
(glidein/vm/updraft-vm-bootstrap) at boot; it reads its user data from the
metadata service and becomes a pilot. Here the lab reads the user data of
an instance from the API (DescribeInstanceAttribute, the bytes the grid
manager really sent), hands it to the same bootstrap with ``--user-data``,
and runs it in the lab's root as the factory user: the root stands in for
the VM's disk (HTCondor, curl, bash). When the bootstrap ends, the "VM"
powers off, which for an instance started with
InstanceInitiatedShutdownBehavior=terminate means the API terminates it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from updraft.atomicwrite import write_atomically
from updraft.glidein import vm_bootstrap_path
from updraft.lab import cloud
from updraft.lab.labconfig import FACTORY_NAME
from updraft.lab.runtime import Runtime
from updraft.lab.topology import FACTORY, Topology

log = logging.getLogger(__name__)

CONSOLE = "console.log"
"""What a stand-in VM's bootstrap printed, in its folder (a VM's console log)."""


@dataclass
class StandInVm:
    """One booted instance: the bootstrap's process and the folder that stands in for its disk."""

    instance_id: str
    process: subprocess.Popen[bytes]
    folder: Path

    @property
    def console(self) -> Path:
        """What the bootstrap printed (a VM's console log)."""
        return self.folder / CONSOLE


def vms_dir(topology: Topology) -> Path:
    return topology.work_dir / "vms"


def boot(topology: Topology, runtime: Runtime, instance_id: str) -> StandInVm:
    """Start the bootstrap for `instance_id` with the user data the API holds for it."""
    folder = vms_dir(topology) / instance_id
    owner = runtime.ids(FACTORY.user)
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, *owner)
    bootstrap = vms_dir(topology) / "updraft-vm-bootstrap"
    shutil.copyfile(vm_bootstrap_path(), bootstrap)
    bootstrap.chmod(0o755)
    user_data = folder / "user-data"
    write_atomically(user_data, cloud.user_data(topology, instance_id), 0o600, owner)
    argv = runtime.argv(
        [
            "runuser",
            "-u",
            FACTORY.user,
            "--",
            "/bin/bash",
            str(bootstrap),
            "--user-data",
            str(user_data),
            "--work-dir",
            str(folder / "pilot"),
            "--on-exit",
            "true",
            # Not a VM: the firewall the rule would go into is the host's own (and no metadata service).
            "--no-metadata-block",
        ],
        {"HOME": str(folder)},
    )
    console = folder / CONSOLE
    with console.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    log.info("instance %s booting (bootstrap pid %d, console %s)", instance_id, process.pid, console)
    return StandInVm(instance_id, process, folder)


def power_off(topology: Topology, vm: StandInVm) -> None:
    """What the VM's shutdown does once its bootstrap is done: the instance is terminated."""
    cloud.terminate(topology, [vm.instance_id])


@dataclass
class Hypervisor:
    """Boots every running instance of the lab's cloud entry once, and powers each off when its
    bootstrap ends: a cloud in miniature, for the demo and the tests."""

    topology: Topology
    runtime: Runtime
    since: float = field(default_factory=time.time)
    """Only instances launched from then on are booted: an older one is some earlier test's, not this run's."""
    vms: dict[str, StandInVm] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)
    """Instance id -> the bootstrap's exit status, for VMs that ran and powered off."""

    def step(self) -> None:
        """Boot what is new, power off what is done."""
        launched = cloud.launched_since(self.topology, self.since, UpdraftFactory=FACTORY_NAME)
        for instance in self._running(launched):
            if instance not in self.vms and instance not in self.exits:
                self.vms[instance] = boot(self.topology, self.runtime, instance)
        for instance, vm in list(self.vms.items()):
            status = vm.process.poll()
            if status is not None:
                power_off(self.topology, vm)
                self.exits[instance] = status
                del self.vms[instance]

    def stop(self) -> None:
        """Kill what still runs (the lab is going down) and power it off."""
        for vm in self.vms.values():
            if vm.process.poll() is None:
                os.killpg(vm.process.pid, signal.SIGKILL)
                vm.process.wait()
        if self.vms:
            cloud.terminate(self.topology, list(self.vms))
        self.vms.clear()

    @staticmethod
    def _running(instances: Iterable[Mapping[str, object]]) -> list[str]:
        return [str(i["InstanceId"]) for i in instances if cloud.state(i) == "running"]

"""Where the lab's HTCondor binaries come from, and how to run them.

Two runtimes: `HostRuntime` uses an HTCondor installed on this machine (an
operator's host); `ChrootRuntime` uses Debian's packaged HTCondor in a
debootstrap root kept in a cache folder, for machines without one. Both
share the lab folder with the host at the same path, because HTCondor
checks submit paths on the client and uses them again in the daemons.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from updraft.atomicwrite import write_atomically
from updraft.errors import LabError
from updraft.lab.topology import OPERATOR

log = logging.getLogger(__name__)

LAB_USER = OPERATOR.user
LAB_UID = OPERATOR.uid
ROOT_SUITE = "trixie"
ROOT_MIRROR = "http://deb.debian.org/debian"
# Bump when the recipe below changes, so cached roots are rebuilt.
ROOT_RECIPE = "5"
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def parse_passwd(text: str, user: str) -> tuple[int, int] | None:
    """(uid, gid) of `user` in passwd-format text, or None."""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user:
            return int(fields[2]), int(fields[3])
    return None


def _run(argv: Sequence[str], what: str, *, input_text: str | None = None) -> str:
    try:
        done = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, check=False)
    except OSError as err:
        raise LabError(f"{what}: cannot run {argv[0]}: {err}") from err
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise LabError(f"{what} failed (exit {done.returncode}): " + " | ".join(tail))
    return done.stdout


def mount_points() -> list[Path]:
    """Mount points from /proc/mounts; `os.path.ismount` misses bind mounts within one filesystem."""
    lines = Path("/proc/mounts").read_text().splitlines()
    return [Path(line.split()[1].replace("\\040", " ")) for line in lines if len(line.split()) > 1]


def _configured_from(pid: int, base_dir: Path) -> bool:
    """Every lab process runs with a CONDOR_CONFIG inside its lab folder."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"CONDOR_CONFIG={base_dir}/".encode() in environ


def process_parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def descendants(parents: Mapping[int, int], ancestor: int) -> list[int]:
    """Every process below `ancestor` in a pid -> parent pid map (not `ancestor` itself)."""
    found: list[int] = []
    frontier = [ancestor]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current and pid not in found]
        found.extend(children)
        frontier.extend(children)
    return found


@dataclass(frozen=True)
class HostRuntime:
    """HTCondor installed on this machine; daemons run directly."""

    kind: str = "host"

    @property
    def root(self) -> Path:
        return Path("/")

    def argv(self, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        return ["env", "-i", f"PATH={CLEAN_PATH}", *(f"{k}={v}" for k, v in env.items()), *command]

    def run(self, command: Sequence[str], env: Mapping[str, str], what: str, input_text: str | None = None) -> str:
        return _run(self.argv(command, env), what, input_text=input_text)

    def ids(self, user: str) -> tuple[int, int]:
        found = parse_passwd((self.root / "etc/passwd").read_text(), user)
        if found is None:
            raise LabError(f"user {user!r} does not exist on this host; create an unprivileged user of that name")
        return found

    def ensure_user(self, user: str, uid: int | None) -> None:
        """The host's users are the operator's to make: only check this one exists."""
        self.ids(user)

    def share(self, path: Path) -> None:
        """Nothing to do: host and daemons see the same files."""

    def unshare(self, path: Path) -> None:
        """Nothing to undo."""

    def owns_process(self, pid: int, base_dir: Path) -> bool:
        return _configured_from(pid, base_dir)


@dataclass(frozen=True)
class ChrootRuntime:
    """Debian's HTCondor in a debootstrap root; daemons run under chroot."""

    root: Path
    kind: str = "root"

    def argv(self, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        clean_env = ["env", "-i", f"PATH={CLEAN_PATH}", *(f"{k}={v}" for k, v in env.items())]
        return ["chroot", str(self.root), *clean_env, *command]

    def run(self, command: Sequence[str], env: Mapping[str, str], what: str, input_text: str | None = None) -> str:
        return _run(self.argv(command, env), what, input_text=input_text)

    def ids(self, user: str) -> tuple[int, int]:
        found = parse_passwd((self.root / "etc/passwd").read_text(), user)
        if found is None:
            raise LabError(f"user {user!r} is missing in {self.root}; remove the cached root to rebuild it")
        return found

    def ensure_user(self, user: str, uid: int | None) -> None:
        """Add `user` to the root once (a root cached before the user was needed lacks it)."""
        if parse_passwd((self.root / "etc/passwd").read_text(), user) is not None:
            return
        uid_args = ["--uid", str(uid)] if uid is not None else []
        _run(
            ["chroot", str(self.root), "useradd", "--create-home", *uid_args, user],
            f"adding the {user} user to the root",
        )

    def share(self, path: Path) -> None:
        """Bind the lab folder into the root at the same path, and mount proc and a pty filesystem.

        The ptys: `remote_gahp` (the grid manager's way to a login node over
        SSH) hands the key's passphrase to ssh-add through one.
        """
        proc = self.root / "proc"
        if proc not in mount_points():
            _run(["mount", "-t", "proc", "proc", str(proc)], "mounting proc in the HTCondor root")
        pts = self.root / "dev/pts"
        if pts not in mount_points():
            options = "newinstance,ptmxmode=0666,mode=0620"  # the root's /dev/ptmx opens this instance
            _run(["mount", "-t", "devpts", "-o", options, "devpts", str(pts)], "mounting ptys in the HTCondor root")
        inside = self.root / path.relative_to("/")
        inside.mkdir(parents=True, exist_ok=True)
        if inside not in mount_points():
            _run(["mount", "--bind", str(path), str(inside)], f"bind-mounting {path} into the HTCondor root")

    def unshare(self, path: Path) -> None:
        """Undo `share`: a bind mount left behind makes a later rm -rf of one side delete the other.

        proc and the ptys stay mounted while another lab still runs in the same root.
        """
        targets = [self.root / path.relative_to("/")]
        if not any(self._inside(int(pid)) for pid in os.listdir("/proc") if pid.isdigit()):
            targets += [self.root / "dev/pts", self.root / "proc"]
        for mount_point in targets:
            while mount_point in mount_points():
                _run(["umount", str(mount_point)], f"unmounting {mount_point}")

    def _inside(self, pid: int) -> bool:
        try:
            return Path(os.readlink(f"/proc/{pid}/root")) == self.root
        except OSError:
            return False

    def owns_process(self, pid: int, base_dir: Path) -> bool:
        """Several labs may share one cached root: the lab folder tells them apart."""
        return self._inside(pid) and _configured_from(pid, base_dir)


Runtime = HostRuntime | ChrootRuntime


def installed_htcondor() -> bool:
    """An HTCondor installation on this host that the lab can use as it is."""
    return shutil.which("condor_master") is not None and shutil.which("condor_token_create") is not None


def choose_runtime(preference: str, cache_dir: Path) -> Runtime:
    """`auto` prefers an installed HTCondor, then the cached (or new) root."""
    if preference == "host" or (preference == "auto" and installed_htcondor()):
        if not installed_htcondor():
            raise LabError("--runtime host: no condor_master on PATH")
        return HostRuntime()
    return ChrootRuntime(ensure_root(cache_dir))


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`."""
    return [m for m in mount_points() if m == path or path in m.parents]


def root_path(cache_dir: Path) -> Path:
    return cache_dir / f"htcondor-{ROOT_SUITE}"


BLAHP_CONFIG_MODULE = Path("usr/libexec/blahp/blah.py")
BLAHP_PY312_BUG = "self.readfp(vfile)"
BLAHP_PY312_FIX = "self.read_file(vfile)"
BLAHP_SLURM_STATUS = Path("usr/libexec/blahp/slurm_status.py")
BLAHP_OUTAGE_BUG = "if jobid and (squeue_proc.returncode == 1 or "
BLAHP_OUTAGE_FIX = "if jobid and (squeue_proc.returncode == 1 and 'Invalid job id' in squeue_out or "


@dataclass(frozen=True)
class BlahpMend:
    """One wrong line of the blahp's Python helpers and its correction."""

    module: Path
    bug: str
    fix: str
    what: str


BLAHP_MENDS = (
    BlahpMend(BLAHP_CONFIG_MODULE, BLAHP_PY312_BUG, BLAHP_PY312_FIX, "for Python 3.12+ (readfp -> read_file)"),
    BlahpMend(
        BLAHP_SLURM_STATUS,
        BLAHP_OUTAGE_BUG,
        BLAHP_OUTAGE_FIX,
        "so an unreachable slurmctld is not read as every job completed",
    ),
)
"""What `fix_blahp` corrects (docs/blahp.md says why, for operators whose sites run the same blahp)."""


def fix_blahp(root: Path) -> bool:
    """Mend the blahp's Python status helpers, as a site admin would; True when something was changed.

    - HTCondor 23.9's blah.py calls ``ConfigParser.readfp``, which Python
      3.12 removed; the root's Python is 3.13, so every ``slurm_status.py``
      (and pbs/lsf) call dies with AttributeError, the blahp answers "Error
      parsing classad or job not found" and the grid manager holds the job.
      ``read_file`` is the same call under its newer name.
    - ``slurm_status.py`` takes ``squeue -j <id>`` exiting 1 as "the job is
      gone, so it completed (exit code 0)". squeue also exits 1 when it
      cannot reach slurmctld: during an outage every polled pilot was
      reported completed and left the schedd's queue while it still ran (or
      waited) in Slurm, an orphan the factory then replaced. Only squeue's
      "Invalid job id" means gone; any other failure is now a failed query
      that the grid manager asks again.
    """
    changed = False
    for mend in BLAHP_MENDS:
        changed = _mend(root / mend.module, mend) or changed
    return changed


def _mend(module: Path, mend: BlahpMend) -> bool:
    try:
        text = module.read_text()
    except FileNotFoundError:
        return False
    if mend.bug not in text:
        return False
    write_atomically(module, text.replace(mend.bug, mend.fix), 0o644)
    log.warning("mended %s %s", module, mend.what)
    return True


def ensure_root(cache_dir: Path) -> Path:
    """The cached HTCondor root, built once (about a minute) and reused."""
    root = root_path(cache_dir)
    stamp = root / ".updraft-root"
    if stamp.is_file() and stamp.read_text().strip() == ROOT_RECIPE:
        fix_blahp(root)
        return root
    if os.geteuid() != 0:
        raise LabError(f"building the HTCondor root in {root} needs root (or install HTCondor on this host)")
    busy = mounts_under(root)
    if busy:
        # Deleting the old root would follow its bind mounts into a running lab's files.
        raise LabError(
            f"the HTCondor root {root} must be rebuilt (recipe {ROOT_RECIPE}) but a lab still uses it "
            f"({', '.join(map(str, busy[:3]))} mounted): take that lab down first (updraft lab down)"
        )
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is missing: apt-get install debootstrap (make test does this)")
    building = cache_dir / f"{root.name}.building"
    shutil.rmtree(building, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.warning("building the HTCondor root in %s (once; about a minute)", root)
    _build_root(building)
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)
    fix_blahp(root)
    return root


def _build_root(root: Path) -> None:
    _run(["debootstrap", "--variant=minbase", ROOT_SUITE, str(root), ROOT_MIRROR], "debootstrap of the HTCondor root")
    chroot = ["chroot", str(root), "env", "-i", f"PATH={CLEAN_PATH}", "DEBIAN_FRONTEND=noninteractive"]
    _run([*chroot, "apt-get", "update"], "apt-get update in the HTCondor root")
    # curl: pilots fetch their staged files over HTTP. victoria-metrics and
    # influxdb (1.x): the monitoring tests run their binaries from the root
    # (updraft.lab.tsdb); their init scripts only warn under chroot. slurm-wlm,
    # munge and openssh: the HPC site and its login node (lab/slurm.py). moto
    # (with flask-cors, which its server imports): the cloud's EC2 API (lab/cloud.py).
    install = [
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "htcondor",
        "curl",
        "ca-certificates",
        "victoria-metrics",
        "influxdb",
        # The HPC site: Slurm with munge, and an sshd for its login node (lab/slurm.py).
        "slurm-wlm",
        "munge",
        "openssh-server",
        "openssh-client",
        # The cloud provider: moto's EC2 API (lab/ec2_api.py).
        "python3-moto",
        "python3-flask-cors",
    ]
    _run([*chroot, *install], "installing HTCondor in the root")
    _run([*chroot, "useradd", "--create-home", "--uid", str(LAB_UID), LAB_USER], "adding the lab user")
    (root / ".updraft-root").write_text(ROOT_RECIPE + "\n")

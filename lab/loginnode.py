"""The HPC site's login node: an sshd where the factory logs in, BOSCO-style, to submit to Slurm.

Factories reach most HPC centres without a CE: HTCondor's grid manager
runs `remote_gahp`, which logs in over SSH with a key and starts the blahp
(and a file-transfer GAHP) in the remote user's ``~/bosco/glite``. The lab
plays both sides in its HTCondor root: one sshd per lab on its own port
(config, host key and log in the lab folder), an unprivileged user `hpc`
with the remote install a site admin would make, and the factory user's
client key where `remote_gahp` looks for it by default. So an entry needs
nothing but ``grid_resource = batch slurm hpc@127.0.0.1:<port>``.

Several labs share one root: what is written into it (the `hpc` user, its
install, the factory's key) is the same for every lab; what differs (the
host key, the Slurm config the login sessions see) lives in the lab folder
or, for known_hosts, under the lab's own port.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from updraft.atomicwrite import write_atomically
from updraft.errors import LabError
from updraft.lab.runtime import ChrootRuntime, descendants, process_parents
from updraft.lab.topology import FACTORY, LOOPBACK, LoginNode, Topology

log = logging.getLogger(__name__)

SSHD = "/usr/sbin/sshd"
CLIENT_KEY = ".ssh/bosco_key.rsa"
"""Where remote_gahp looks for the key of the user it runs as (``--rgahp-key``'s default)."""
PASSPHRASE_FILE = ".bosco/.pass"
"""The key's passphrase, where remote_gahp looks for it (``--rgahp-pass``'s default)."""
GLITE = "bosco/glite"
"""The remote install, where remote_gahp starts its GAHPs (``--rgahp-glite``'s default, ``~/bosco/glite``)."""
SANDBOX = "bosco/sandbox"
READY_TIMEOUT = 15.0

SITE_LINKS: tuple[tuple[str, str], ...] = (
    # remote_gahp starts "$GLITE/bin/<command>": HTCondor 23 asks for blahpd, later versions for batch_gahp.
    ("bin/blahpd", "/usr/bin/blahpd"),
    ("bin/batch_gahp", "/usr/bin/blahpd"),
    ("bin/condor_ft-gahp", "/usr/sbin/condor_ft-gahp"),
    # blahpd and its scripts look for $BLAHPD_LOCATION/libexec and $BLAHPD_LOCATION/etc/blah.config.
    ("libexec", "/usr/libexec/blahp"),
    ("etc/blah.config", "/etc/blah.config"),
)
"""The remote install: the login node's own blahp and file-transfer GAHP, as a site admin links them in
instead of unpacking the tarball `condor_remote_cluster` would copy over."""

FT_GAHP_CONFIG = """\
# The file-transfer GAHP's whole configuration (remote_gahp points CONDOR_CONFIG here).
# It reaches the grid manager back through the SSH tunnel, in a security session the
# grid manager hands it over the GAHP protocol: no authentication setup of its own.
BOSCO_SANDBOX_DIR = $ENV(HOME)/bosco/sandbox
LOG = $ENV(HOME)/bosco/glite/log
FT_GAHP_LOG = $(LOG)/FTGahpLog
USE_SHARED_PORT = False
ENABLE_URL_TRANSFERS = False
"""


def sshd_config(node: LoginNode, slurm_conf: Path) -> str:
    """The lab's sshd: loopback, its own port, public keys only, the one batch user, no PAM.

    SetEnv hands each login session the lab's Slurm config: the home
    folder (and its install) is shared by every lab in the root, the sshd
    is not. AllowTcpForwarding=remote is what the file-transfer GAHP's
    tunnel back to the grid manager needs (``ssh -R``).
    """
    return f"""\
# Written by `updraft lab up`: the HPC login node of the lab in {node.dir.parent}.
Port {node.port}
ListenAddress {LOOPBACK}
HostKey {node.host_key}
PidFile {node.pid_file}
AllowUsers {node.user}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowTcpForwarding remote
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
MaxStartups 50:30:100
SetEnv SLURM_CONF={slurm_conf}
LogLevel VERBOSE
"""


LOGIN_PROFILE = """\
# Written by `updraft lab up` (the site's install for batch jobs submitted over SSH).
# remote_gahp starts the blahp in a login shell, and the batch jobs it submits inherit
# this environment: HTCondor's daemons (which the lab's pilots run from the node) are
# in /usr/sbin, which Debian's /etc/profile leaves out for ordinary users.
if [ -f "$HOME/.profile" ]; then . "$HOME/.profile"; fi
PATH="$PATH:/usr/sbin:/sbin"
export PATH
"""
"""The batch user's ~/.bash_profile (bash -l reads it instead of ~/.profile, which it sources)."""


def install_script() -> str:
    """Shell run as the batch user: the BOSCO layout in its home (idempotent, the same for every lab)."""
    links = "\n".join(f"ln -sfn {target} {GLITE}/{name}" for name, target in SITE_LINKS)
    return f"""\
set -eu
cd "$HOME"
umask 022
mkdir -p {GLITE}/bin {GLITE}/etc {GLITE}/log {SANDBOX}
{links}
cat > {GLITE}/etc/condor_config.ft-gahp.new
mv -f {GLITE}/etc/condor_config.ft-gahp.new {GLITE}/etc/condor_config.ft-gahp
cat > .bash_profile.new <<'UPDRAFT_PROFILE'
{LOGIN_PROFILE}UPDRAFT_PROFILE
mv -f .bash_profile.new .bash_profile
"""


AUTHORIZE_SCRIPT = """\
set -eu
umask 077
key=$(cat)
mkdir -p "$HOME/.ssh"
touch "$HOME/.ssh/authorized_keys"
grep -qxF "$key" "$HOME/.ssh/authorized_keys" || printf '%s\\n' "$key" >> "$HOME/.ssh/authorized_keys"
"""
"""Run as the batch user, the factory's public key on stdin: add it once to authorized_keys."""

CLIENT_KEY_SCRIPT = f"""\
set -eu
umask 077
mkdir -p "$HOME/.ssh" "$HOME/.bosco"
if [ ! -s "$HOME/{CLIENT_KEY}" ]; then
    rm -f "$HOME/{CLIENT_KEY}" "$HOME/{CLIENT_KEY}.pub"
    head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$HOME/{PASSPHRASE_FILE}"
    ssh-keygen -q -t rsa -b 3072 -C bosco -N "$(cat "$HOME/{PASSPHRASE_FILE}")" -f "$HOME/{CLIENT_KEY}"
fi
"""
"""Run as the factory user: the key pair `condor_remote_cluster --add` would make (RSA, with a random
passphrase in ~/.bosco/.pass), once."""


def with_known_host(known_hosts: str, name: str, key: str) -> str:
    """known_hosts text with exactly one line for `name`: its old lines (a previous lab's host key
    on the same port) replaced by `key` (``type base64``)."""
    kept = [line for line in known_hosts.splitlines() if line.strip() and line.split()[0] != name]
    return "\n".join([*kept, f"{name} {key}"]) + "\n"


def password_locked(shadow: str, user: str) -> bool:
    """Whether `user`'s shadow entry is locked ("!..."): sshd without PAM refuses even key logins then."""
    for line in shadow.splitlines():
        fields = line.split(":")
        if len(fields) > 1 and fields[0] == user:
            return fields[1].startswith("!")
    return False


# --------------------------------------------------------------------------
# The site admin's part: shared by every lab in the root, done once
# --------------------------------------------------------------------------


@contextmanager
def _root_lock(runtime: ChrootRuntime) -> Iterator[None]:
    """Labs starting at once must not add the user or write its install at the same time."""
    lock_path = runtime.root / "var/lib/updraft-login-node.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _home(runtime: ChrootRuntime, user: str) -> Path:
    return runtime.root / "home" / user


def _as_user(runtime: ChrootRuntime, user: str, script: str, what: str, input_text: str = "") -> None:
    """Run `script` as `user` with that user's own environment (HOME): never root writing into a user's
    home, where a planted symlink would redirect it."""
    uid, gid = runtime.ids(user)
    argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--reset-env", "sh", "-c", script]
    runtime.run(argv, {}, what, input_text)


def install_site(runtime: ChrootRuntime, node: LoginNode) -> None:
    """The batch user, the factory's BOSCO key authorized for it, and the remote install (idempotent)."""
    with _root_lock(runtime):
        runtime.ensure_user(node.user, node.uid)
        if password_locked((runtime.root / "etc/shadow").read_text(), node.user):
            runtime.run(["usermod", "-p", "*", node.user], {}, f"unlocking {node.user} for key logins")
        privsep = runtime.root / "run/sshd"  # sshd refuses to start without it
        privsep.mkdir(mode=0o755, exist_ok=True)
        _as_user(runtime, FACTORY.user, CLIENT_KEY_SCRIPT, "making the factory's SSH key")
        public_key = (_home(runtime, FACTORY.user) / f"{CLIENT_KEY}.pub").read_text().strip()
        _as_user(runtime, node.user, AUTHORIZE_SCRIPT, f"authorizing the factory's key for {node.user}", public_key)
        _as_user(runtime, node.user, install_script(), f"installing the blahp for {node.user}", FT_GAHP_CONFIG)


# --------------------------------------------------------------------------
# The lab's own sshd
# --------------------------------------------------------------------------


def start(topology: Topology, runtime: ChrootRuntime, timeout: float = READY_TIMEOUT) -> None:
    """Install the site (once per root), then run this lab's sshd and let the factory trust its host key."""
    node = topology.login_node
    install_site(runtime, node)
    node.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not node.host_key.exists():
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"login@{topology.base_dir}"]
        runtime.run([*keygen, "-f", str(node.host_key)], {}, "making the login node's host key")
    write_atomically(node.sshd_config, sshd_config(node, topology.slurm_conf))
    _trust_host_key(runtime, node)
    if listener(topology) is None:
        # The marker lab_processes knows HTCondor's processes by; sshd overwrites its own environment
        # with its process title, so its processes are found through the listener's pid file instead.
        env = {"CONDOR_CONFIG": str(node.sshd_config)}
        runtime.run([SSHD, "-f", str(node.sshd_config), "-E", str(node.log_file)], env, "starting the login node")
    wait_answering(node, timeout)


def _trust_host_key(runtime: ChrootRuntime, node: LoginNode) -> None:
    """The factory's known_hosts names this lab's host key under its port: BatchMode ssh asks nobody."""
    key = " ".join(Path(f"{node.host_key}.pub").read_text().split()[:2])
    known_hosts = _home(runtime, FACTORY.user) / ".ssh/known_hosts"
    with _root_lock(runtime):
        old = known_hosts.read_text() if known_hosts.is_file() else ""
        text = with_known_host(old, node.known_hosts_name, key)
        write_atomically(known_hosts, text, 0o644, runtime.ids(FACTORY.user))


def answers(node: LoginNode, timeout: float = 2.0) -> bool:
    """An SSH banner on the login node's port."""
    try:
        with socket.create_connection((LOOPBACK, node.port), timeout=timeout) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_answering(node: LoginNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not answers(node):
        if time.monotonic() > deadline:
            raise LabError(f"the login node's sshd on port {node.port} did not answer: {_log_tail(node)}")
        time.sleep(0.2)


def _log_tail(node: LoginNode) -> str:
    try:
        return " | ".join(node.log_file.read_text(errors="replace").strip().splitlines()[-5:]) or "(empty log)"
    except OSError:
        return "(no log)"


def listener(topology: Topology) -> int | None:
    """The lab's sshd listener, if it runs: the pid in its pid file, checked against its command line."""
    node = topology.login_node
    try:
        pid = int(node.pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(node.sshd_config).encode() in cmdline else None


def processes(topology: Topology) -> list[int]:
    """The listener and everything below it: the sessions and the GAHPs they run."""
    pid = listener(topology)
    return [] if pid is None else [pid, *descendants(process_parents(), pid)]


def stop(topology: Topology, grace: float = 5.0) -> list[int]:
    """The login node goes down, sessions and all, as when the machine fails: SIGTERM, then SIGKILL for
    what is still there after `grace` (a blahpd busy in a batch command). Returns the pids killed hard."""
    pids = processes(topology)
    _signal(pids, signal.SIGTERM)
    stubborn = _wait_gone(pids, grace)
    _signal(stubborn, signal.SIGKILL)
    left = _wait_gone(stubborn, grace)
    if left:
        raise LabError(f"login node processes {left} survived SIGKILL")
    return stubborn


def _signal(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive (zombies count as gone) after up to `timeout` s."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False

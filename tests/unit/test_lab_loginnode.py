"""The lab's HPC login node, without daemons: its sshd config, the remote install, known_hosts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from updraft.lab import loginnode
from updraft.lab.runtime import descendants
from updraft.lab.topology import build_topology


@pytest.fixture
def topology(tmp_path: Path):
    return build_topology(tmp_path / "lab", 30400)


def _settings(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_the_login_node_listens_after_the_labs_other_ports_and_names_itself_as_remote_gahp_wants(topology) -> None:
    node = topology.login_node
    assert node.port == 30410
    assert node.ssh_host == "hpc@127.0.0.1:30410"
    assert node.known_hosts_name == "[127.0.0.1]:30410"
    assert node.dir == topology.base_dir / "login"
    other_ports = {i.collector_port for i in topology.instances} | {
        topology.factory.web_port,
        topology.factory.influx_port,
        (topology.factory.influx_port or 0) + 1,
        topology.hpc.ctld_port,
        *topology.hpc.node_ports,
    }
    assert node.port == topology.hpc.ssh_port
    assert node.port not in other_ports


def test_sshd_takes_keys_only_for_the_batch_user_and_gives_sessions_the_labs_slurm(topology) -> None:
    node = topology.login_node
    settings = _settings(loginnode.sshd_config(node, topology.slurm_conf))
    assert settings["Port"] == "30410"
    assert settings["ListenAddress"] == "127.0.0.1"
    assert settings["AllowUsers"] == "hpc"
    assert settings["AuthenticationMethods"] == "publickey"
    assert settings["PasswordAuthentication"] == "no"
    assert settings["PermitRootLogin"] == "no"
    assert settings["HostKey"] == str(node.host_key)
    assert settings["PidFile"] == str(node.pid_file)
    assert settings["SetEnv"] == f"SLURM_CONF={topology.base_dir}/slurm/slurm.conf"
    # the file-transfer GAHP reaches the grid manager back through ssh -R
    assert settings["AllowTcpForwarding"] in ("remote", "yes")


def test_the_remote_install_is_where_remote_gahp_looks_and_points_at_the_nodes_own_blahp() -> None:
    links = dict(loginnode.SITE_LINKS)
    # remote_gahp runs ~/bosco/glite/bin/<blahpd|batch_gahp|condor_ft-gahp>
    assert links["bin/blahpd"] == links["bin/batch_gahp"] == "/usr/bin/blahpd"
    assert links["bin/condor_ft-gahp"] == "/usr/sbin/condor_ft-gahp"
    assert links["libexec"] == "/usr/libexec/blahp"
    script = loginnode.install_script()
    assert "bosco/glite/etc/condor_config.ft-gahp" in script
    assert "mkdir -p bosco/glite/bin bosco/glite/etc bosco/glite/log bosco/sandbox" in script
    for name, target in loginnode.SITE_LINKS:
        assert f"ln -sfn {target} bosco/glite/{name}" in script


def test_the_install_script_makes_the_layout_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for _ in range(2):
        done = subprocess.run(
            ["sh", "-c", loginnode.install_script()],
            input=loginnode.FT_GAHP_CONFIG,
            env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    glite = home / "bosco/glite"
    assert (glite / "etc/condor_config.ft-gahp").read_text() == loginnode.FT_GAHP_CONFIG
    assert str((glite / "libexec").readlink()) == "/usr/libexec/blahp"
    assert not (glite / "libexec/blahp").is_symlink()  # a second ln -sfn must not nest a link in the target
    assert (home / "bosco/sandbox").is_dir()
    assert (home / ".bash_profile").read_text() == loginnode.LOGIN_PROFILE


def test_the_login_shell_finds_htcondors_daemons_and_keeps_the_users_profile(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".profile").write_text("EXTRA=from-profile\nexport EXTRA\n")
    (home / ".bash_profile").write_text(loginnode.LOGIN_PROFILE)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        ["bash", "--noprofile", "-c", '. "$HOME/.bash_profile"; echo "$PATH|$EXTRA"'],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    path, extra = done.stdout.strip().split("|")
    assert "/usr/sbin" in path.split(":") and extra == "from-profile"


def test_ft_gahp_config_keeps_its_sandbox_and_log_in_the_users_bosco_folder() -> None:
    config = loginnode.FT_GAHP_CONFIG
    assert "BOSCO_SANDBOX_DIR = $ENV(HOME)/bosco/sandbox" in config
    assert "FT_GAHP_LOG = $(LOG)/FTGahpLog" in config


def test_known_hosts_keeps_one_line_per_port_and_others_untouched() -> None:
    old = "[127.0.0.1]:30410 ssh-ed25519 OLD\n[127.0.0.1]:29628 ssh-ed25519 OTHERLAB\n"
    new = loginnode.with_known_host(old, "[127.0.0.1]:30410", "ssh-ed25519 NEW")
    assert new.splitlines() == ["[127.0.0.1]:29628 ssh-ed25519 OTHERLAB", "[127.0.0.1]:30410 ssh-ed25519 NEW"]
    assert loginnode.with_known_host("", "[127.0.0.1]:1", "k v") == "[127.0.0.1]:1 k v\n"


@pytest.mark.parametrize(
    ("shadow", "locked"),
    [("hpc:!:20792:0:99999:7:::\n", True), ("hpc:*:20792:0:99999:7:::\n", False), ("other:!:1::::::\n", False)],
)
def test_a_locked_account_is_recognised(shadow: str, locked: bool) -> None:
    assert loginnode.password_locked(shadow, "hpc") is locked


def test_descendants_follow_the_whole_tree_and_nothing_else() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 12, 20: 1, 21: 20}
    assert sorted(descendants(parents, 10)) == [11, 12, 13]
    assert descendants(parents, 13) == []

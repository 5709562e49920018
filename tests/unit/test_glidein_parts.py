"""The glidein's parts, one at a time: source lib/<part>.sh in a POSIX sh and call one function.

The whole-script runs (test_glidein_startup.py and friends) prove the
pilot; these pin each function's own contract, and that the parts
assemble into the one script pilots get (updraft.glidein.assemble).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from updraft.glidein import assemble
from updraft.glidein.assemble import PARTS, AssemblyError, shipped_script, write_script

GLIDEIN = Path(__file__).resolve().parents[2] / "glidein"
TEMPLATE = GLIDEIN / "templates" / "condor_config.in"
SHELL = shutil.which("dash") or "/bin/sh"
SHA_A = "a" * 64


@dataclass
class Done:
    rc: int
    stdout: str
    stderr: str


def call(
    part: str,
    code: str,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = None,
    also: tuple[str, ...] = (),
) -> Done:
    """Source lib/common.sh (log, fail) and lib/<part>.sh (plus `also`), then run `code` with `args` as $@."""
    sources = "".join(f'. "{GLIDEIN}/lib/{name}.sh"\n' for name in ("common", *also, part))
    done = subprocess.run(
        [SHELL, "-c", f"set -eu\n{sources}{code}\n", "part-test", *args],
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=20,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def defined_functions(text: str) -> list[str]:
    return re.findall(r"^([a-z_0-9]+)\(\) \{$", text, re.MULTILINE)


# --- assembly -----------------------------------------------------------------


def test_the_assembly_is_stable_and_is_what_ships() -> None:
    text = assemble.assemble(GLIDEIN)
    assert text == assemble.assemble(GLIDEIN)
    script = shipped_script(GLIDEIN)
    assert hashlib.sha256(script.read_bytes()).hexdigest() == assemble.sha256(text)
    assert text.startswith("#!/bin/sh\n") and text.endswith('main "$@"\n')


def test_every_part_is_assembled_once_in_order_and_defines_its_own_functions() -> None:
    on_disk = sorted(f"lib/{path.name}" for path in (GLIDEIN / "lib").glob("*.sh"))
    assert sorted(PARTS) == on_disk, "a part on disk is not in PARTS (or the reverse)"
    text = assemble.assemble(GLIDEIN)
    positions = [text.index(f"# glidein/{part}\n") for part in (*PARTS, "templates/condor_config.in", "main.sh")]
    assert positions == sorted(positions)
    functions = defined_functions(text)
    assert len(functions) == len(set(functions)), "two parts define the same function"
    for part in PARTS:
        assert defined_functions((GLIDEIN / part).read_text()), part


@pytest.mark.parametrize("part", [p.removeprefix("lib/").removesuffix(".sh") for p in PARTS])
def test_sourcing_a_part_runs_nothing(part: str) -> None:
    assert call(part, ":") == Done(0, "", "")


@pytest.mark.parametrize("tool", [["shellcheck", "-s", "sh"], ["checkbashisms"]])
def test_the_parts_are_clean_posix_sh(tool: list[str]) -> None:
    assert shutil.which(tool[0]), f"{tool[0]} is missing: scripts/system-deps installs it"
    files = [str(GLIDEIN / part) for part in PARTS] + [str(GLIDEIN / "main.sh")]
    done = subprocess.run([*tool, *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stale_script_is_rewritten_and_an_unwritable_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "glidein"
    shutil.copytree(GLIDEIN, source, ignore=shutil.ignore_patterns("glidein_startup.sh", "__pycache__"))
    script = shipped_script(source)
    assert script.stat().st_mode & 0o777 == 0o755
    (source / "lib" / "report.sh").write_text((source / "lib" / "report.sh").read_text() + "\n# changed\n")
    assert "# changed" in shipped_script(source).read_text()
    (source / "lib" / "report.sh").write_text((source / "lib" / "report.sh").read_text() + "# again\n")

    def read_only(*_: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(assemble, "write_script", read_only)
    with pytest.raises(AssemblyError, match="not the assembly of the glidein's parts"):
        shipped_script(source)


def test_a_template_line_that_would_end_its_heredoc_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "glidein"
    shutil.copytree(GLIDEIN, source, ignore=shutil.ignore_patterns("glidein_startup.sh", "__pycache__"))
    (source / "templates" / "condor_config.in").write_text(f"A = 1\n{assemble.TEMPLATE_END}\nB = 2\n")
    with pytest.raises(AssemblyError, match="would end its heredoc"):
        write_script(tmp_path / "out.sh", source)


# --- args ---------------------------------------------------------------------


def test_options_take_their_value_either_way_and_dry_run_takes_none() -> None:
    done = call(
        "args",
        'dry_run=0; parse_arguments "$@"; printf "%s|%s|%s|%s" "$collector" "$work_dir" "$nodes" "$dry_run"',
        "--collector=host:9618",
        "--work-dir",
        "/w d",
        "--dry-run",
        "--nodes=3",
    )
    assert done == Done(0, "host:9618|/w d|3|1", "")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--bogus"], "unknown option: --bogus"),
        (["--collector"], "option --collector needs a value"),
        (["--collector", "--dry-run"], "option --collector needs a value (got option --dry-run)"),
    ],
)
def test_bad_options_fail_the_args_step(args: list[str], reason: str) -> None:
    done = call("args", 'parse_arguments "$@"', *args)
    assert done.rc == 1
    assert f"FAILED at args: {reason}" in done.stderr


def test_the_command_line_wins_over_updraft_which_wins_over_glidein_which_wins_over_the_default() -> None:
    show = 'printf "%s|%s|%s|%s" "$max_walltime" "$shutdown_margin" "$spread" "$max_idle"'
    state = "max_walltime=100 shutdown_margin= spread= max_idle= nodes=1; " + "; ".join(
        f"{name}=''"
        for name in (
            "manifest_url",
            "manifest_sha256",
            "frontend_manifest_url",
            "frontend_manifest_sha256",
            "condor_tarball_url",
            "condor_tarball_sha256",
            "work_dir",
            "condor_dir",
            "collector",
            "max_job_time",
            "idle_tail",
            "blackhole_jobs",
            "blackhole_window",
            "node_launcher",
            "dry_run",
        )
    )
    env = {
        "UPDRAFT_MAX_WALLTIME": "200",
        "UPDRAFT_SHUTDOWN_MARGIN": "30",
        "GLIDEIN_Shutdown_Margin": "40",
        "GLIDEIN_Retire_Spread": "50",
    }
    done = call("args", f"{state}; apply_environment_fallbacks; {show}", env=env)
    assert done == Done(0, "100|30|50|1200", "")


def test_the_domains_come_from_the_command_line_or_updraft_never_from_a_pilot_attribute() -> None:
    show = 'printf "%s|%s" "$filesystem_domain" "$uid_domain"'
    given = call(
        "args", f'parse_arguments "$@"; {show}', "--filesystem-domain=e.f.updraft.invalid", "--uid-domain", "u"
    )
    assert given == Done(0, "e.f.updraft.invalid|u", "")
    env = {"UPDRAFT_UID_DOMAIN": "from-updraft", "GLIDEIN_FileSystemDomain": "x", "GLIDEIN_UidDomain": "y"}
    state = "filesystem_domain='' uid_domain='' nodes=1"
    fallback = call("args", f"{state}; apply_environment_fallbacks; {show}", env=env)
    assert (fallback.rc, fallback.stdout.split("|")) == (0, ["", "from-updraft"]), fallback.stderr


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("site1.fac.updraft.invalid", True),
        ("Lab_1-x", True),
        (".lab", False),
        ("-lab", False),
        ("a b", False),
        ("lab\nDAEMON_LIST = MASTER", False),
        ("$(HOSTNAME)", False),
    ],
)
def test_a_domain_is_a_plain_name_or_nothing(value: str, ok: bool) -> None:
    done = call("args", 'check_domain --uid-domain "$1"', value)
    assert done.rc == (0 if ok else 1), done.stderr
    if not ok:
        assert "FAILED at args: --uid-domain must be a domain name" in done.stderr


@pytest.mark.parametrize(
    ("job_id", "ok"), [("42.7", True), ("42", False), ("4.2.1", False), (".7", False), ("42.", False), ("4x.7", False)]
)
def test_the_job_id_must_be_cluster_dot_proc(job_id: str, ok: bool) -> None:
    state = f"factory=f entry=e frontend=v group=g job_id='{job_id}'"
    done = call("args", f"{state}; check_identity")
    assert done.rc == (0 if ok else 1), done.stderr
    if not ok:
        assert "UPDRAFT_JOB_ID must be cluster.proc" in done.stderr


def test_nodes_come_from_the_batch_system_when_not_given(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn3\nn2\n")
    done = call(
        "args", 'nodes=; resolve_nodes; printf "%s (%s)" "$nodes" "$nodes_origin"', env={"PBS_NODEFILE": str(nodefile)}
    )
    assert done.stdout == "3 (distinct lines of PBS_NODEFILE)"
    done = call(
        "args",
        'nodes=; resolve_nodes; printf "%s (%s)" "$nodes" "$nodes_origin"',
        env={"PBS_NODEFILE": str(nodefile), "SLURM_JOB_NUM_NODES": "5"},
    )
    assert done.stdout == "5 (SLURM_JOB_NUM_NODES)"


# --- fetch and verify ---------------------------------------------------------


def test_a_file_verifies_against_its_own_digest_and_not_another(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"pilot\n")
    good = hashlib.sha256(b"pilot\n").hexdigest()
    assert call("fetch", 'verify_sha256 "$1" "$2" "the data"', str(data), good) == Done(0, "", "")
    done = call("fetch", 'verify_sha256 "$1" "$2" "the data"', str(data), SHA_A)
    assert done.rc == 1
    assert f"FAILED at verify: SHA-256 mismatch for the data: expected {SHA_A}, got {good}" in done.stderr


def test_fetch_url_copies_file_urls_and_refuses_other_schemes(tmp_path: Path) -> None:
    (tmp_path / "src").write_text("x")
    assert call("fetch", 'fetch_url "$1" "$2"', f"file://{tmp_path}/src", str(tmp_path / "dst")).rc == 0
    assert (tmp_path / "dst").read_text() == "x"
    done = call("fetch", 'fetch_url "$1" "$2"', "ftp://host/x", str(tmp_path / "ftp"))
    assert done.rc == 1 and "unsupported URL scheme: ftp://host/x" in done.stderr


@pytest.mark.parametrize(
    ("origin", "line", "outcome"),
    [
        ("entry", f"{SHA_A} checks/disk.sh validate-entry", f"{SHA_A} checks/disk.sh validate-entry\n"),
        ("frontend", f"{SHA_A} site.config condor-config", f"{SHA_A} site.config condor-config\n"),
        (
            "frontend",
            f"{SHA_A} check.sh validate-entry",
            "frontend manifest line 3: kind validate-entry belongs in the factory's manifest",
        ),
        ("entry", f"{SHA_A} ../x file", "factory manifest line 3: path not allowed: ../x"),
        ("entry", f"{SHA_A} x", "factory manifest line 3: expected 'sha256 path kind', got 2 fields"),
        ("entry", f"{'A' * 64} x file", "factory manifest line 3: bad sha256 for x"),
        ("entry", f"{SHA_A} x script", "factory manifest line 3: unknown kind 'script' for x"),
    ],
)
def test_a_manifest_line_is_listed_or_refused_with_its_place(
    tmp_path: Path, origin: str, line: str, outcome: str
) -> None:
    done = call("fetch", f'work_dir="$1"; parse_manifest_line {origin} 3 "$2"', str(tmp_path), line)
    listed = tmp_path / f"manifest.{origin}.list"
    if outcome.endswith("\n"):
        assert done.rc == 0 and listed.read_text() == outcome
    else:
        assert done.rc == 1 and f"FAILED at verify: {outcome}" in done.stderr
        assert not listed.exists()


# --- lifetime -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_job_time", "retire", "clamped"), [(600, 1000 + 3600 - 300 - 600, "no"), (5000, 1000, "yes")]
)
def test_retire_and_die_times(max_job_time: int, retire: int, clamped: str) -> None:
    state = (
        f"start_time=1000 max_walltime=3600 shutdown_margin=300 max_job_time={max_job_time} spread=0 retire_clamped=no"
    )
    done = call(
        "lifetime", f'{state}; compute_lifetime; printf "%s %s %s" "$die_time" "$retire_time" "$retire_clamped"'
    )
    assert done.stdout == f"4300 {retire} {clamped}"


# --- the condor configuration template ----------------------------------------


def test_fill_template_replaces_names_keeps_backslashes_and_drops_empty_conditional_lines() -> None:
    template = "@# not written\nA = @X@ and @X@\n@?Y@B = @X@\n@?Z@C = never\n@BLOCK@\n@EMPTY@\nD = $(MACRO)\n"
    done = call(
        "template",
        'fill_template "$@"',
        'X=say "a\\b" @Z@ \\n',
        "Y=yes",
        "Z=",
        "BLOCK=l1\nl2",
        "EMPTY=",
        stdin=template,
    )
    assert done == Done(
        0, 'A = say "a\\b" @Z@ \\n and say "a\\b" @Z@ \\n\nB = say "a\\b" @Z@ \\n\nl1\nl2\nD = $(MACRO)\n', ""
    )


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("A = @MISSING@\n", "line 1: no value for @MISSING@"),
        ("A = 1\nB = @BLOCK@\n", "line 2: @BLOCK@ has several lines but is not alone on its line"),
    ],
)
def test_fill_template_refuses_an_unknown_name_and_an_inline_block(template: str, error: str) -> None:
    done = call("template", 'fill_template "$@"', "BLOCK=l1\nl2", stdin=template)
    assert done.rc == 2 and f"fill_template: {error}" in done.stderr


CONFIG_STATE = """
glidein_name='glidein_42_7_1@host' release_dir='' collector='cm:9618' pilot_token_dir='' nodes=1
entry=site1 factory=fac frontend=vo group=main job_id=42.7 credential_id='vo.main.1'
retire_time=2000 die_time=3000 max_walltime=3600 max_idle=1200 idle_tail=300 cpus=4
blackhole_jobs=0 blackhole_window=600 MANIFEST_ORIGINS='entry frontend'
"""


def render(tmp_path: Path, state: str = "", env: dict[str, str] | None = None) -> str:
    """The startd configuration from the template file, with CONFIG_STATE then `state`."""
    for origin in ("entry", "frontend"):
        (tmp_path / f"manifest.{origin}.list").touch()
    done = call(
        "condor_config",
        f'{CONFIG_STATE}work_dir="$1"\n{state}\nrender_condor_config "$1/condor"',
        str(tmp_path),
        env=env,
        stdin=TEMPLATE.read_text(),
        also=("template",),
    )
    assert done.rc == 0, done.stderr
    return done.stdout


def config_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_a_single_node_partitionable_configuration(tmp_path: Path) -> None:
    text = render(tmp_path, env={"GLIDEIN_MaxMemMBs": "2048"})
    lines = config_lines(text)
    for expected in [
        "COLLECTOR_HOST = cm:9618",
        f"LOCAL_DIR = {tmp_path}/condor",
        f"STARTD_HISTORY = {tmp_path}/condor/log/startd_history",
        "MASTER_NAME = glidein_42_7_1@host",
        "STARTD_NAME = glidein_42_7_1@host",
        'GLIDEIN_Site = "site1"',
        'GLIDEIN_CredentialIdentifier = "vo.main.1"',
        "GLIDEIN_ToRetire = 2000",
        "GLIDEIN_ToDie = 3000",
        "NUM_CPUS = 4",
        "MEMORY = 2048",
        "SLOT_TYPE_1_PARTITIONABLE = True",
        "START = (time() < GLIDEIN_ToRetire)",
        "STARTD.DAEMON_SHUTDOWN = (time() > GLIDEIN_ToRetire) && $(GLIDEIN_NothingRuns)",
        "BENCHMARKS_JOBLIST =",
    ]:
        assert expected in lines, expected
    assert not any(
        line.startswith(("RELEASE_DIR", "SEC_", "GLIDEIN_Schedd", "GLIDEIN_BlackHole", "NUM_SLOTS ", "include"))
        for line in lines
    )
    assert "@" not in text.replace("glidein_42_7_1@host", "")
    assert text.startswith("# Written by glidein_startup.sh for glidein_42_7_1@host; rewritten at every start.\n")


def test_the_domains_are_written_when_given_and_left_to_htcondor_when_not(tmp_path: Path) -> None:
    given = config_lines(render(tmp_path, "filesystem_domain=e.f.updraft.invalid uid_domain=u.invalid"))
    assert "FILESYSTEM_DOMAIN = e.f.updraft.invalid" in given and "UID_DOMAIN = u.invalid" in given
    # after every staged include, so no staged file changes what the entry ad announced
    assert given.index("FILESYSTEM_DOMAIN = e.f.updraft.invalid") > max(
        (i for i, line in enumerate(given) if line.startswith("include")), default=-1
    )
    unset = config_lines(render(tmp_path, "filesystem_domain='' uid_domain=''"))
    assert not any(line.startswith(("FILESYSTEM_DOMAIN", "UID_DOMAIN")) for line in unset)


def test_release_token_blackhole_fixed_slots_and_staged_includes(tmp_path: Path) -> None:
    (tmp_path / "manifest.entry.list").write_text(f"{SHA_A} site.config condor-config\n{SHA_A} x.sh validate-entry\n")
    (tmp_path / "manifest.frontend.list").write_text(f"{SHA_A} vo.config condor-config\n")
    text = render(
        tmp_path,
        "release_dir=/opt/condor pilot_token_dir=/t blackhole_jobs=3 nodes=2",
        env={"GLIDEIN_Slots_Layout": "fixed", "GLIDEIN_Schedd": 'sch"ed', "GLIDEIN_Site": "a\\b"},
    )
    lines = config_lines(text)
    assert lines[:2] == [
        f"include : {tmp_path}/files/entry/site.config",
        f"include : {tmp_path}/files/frontend/vo.config",
    ]
    for expected in [
        "RELEASE_DIR = /opt/condor",
        "SBIN = $(RELEASE_DIR)/sbin",
        "SEC_TOKEN_DIRECTORY = /t",
        'GLIDEIN_Schedd = "sch\\"ed"',
        'GLIDEIN_Site = "a\\\\b"',
        "GLIDEIN_Nodes = 2",
        "GLIDEIN_BlackHole_Jobs = 3",
        "GLIDEIN_BlackHole_Window = 600",
        "GLIDEIN_BlackHole = (RecentJobStarts =!= undefined) && (RecentJobStarts > 3)",
        "STARTD_SLOT_ATTRS = $(STARTD_SLOT_ATTRS) State",
        "NUM_SLOTS = 4",
        "START = (time() < GLIDEIN_ToRetire) && (GLIDEIN_BlackHole =!= True)",
    ]:
        assert expected in lines, expected
    assert not any(line.startswith(("MASTER_NAME", "STARTD_NAME", "SLOT_TYPE_1")) for line in lines)
    attrs = next(line for line in lines if line.startswith("STARTD_ATTRS = "))
    assert attrs.endswith(
        "GLIDEIN_NodeIndex GLIDEIN_Schedd GLIDEIN_BlackHole GLIDEIN_BlackHole_Jobs GLIDEIN_BlackHole_Window"
    )


# --- nodes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "index"),
    [
        ({"SLURM_PROCID": "2", "PMI_RANK": "1"}, "2"),
        ({"UPDRAFT_NODE_INDEX": "0", "SLURM_NODEID": "3"}, "0"),
        ({"OMPI_COMM_WORLD_RANK": "4"}, "4"),
        ({}, ""),
    ],
)
def test_the_node_index_comes_from_whichever_launcher_started_the_node(env: dict[str, str], index: str) -> None:
    assert call("nodes", "node_index_from_environment", env=env).stdout == index


def prepared_work_dir(tmp_path: Path, nodes: int) -> Path:
    (tmp_path / "condor").mkdir()
    (tmp_path / "condor" / "nodes.conf").write_text(
        f"nodes={nodes}\ndie_time=1\nshutdown_margin=30\nrelease_dir=/opt/condor\nname_prefix=glidein_42_7_1\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        ("5", "node index 5 is not below the node count 2"),
        ("x", "no node index: set UPDRAFT_NODE_INDEX"),
    ],
)
def test_a_node_refuses_an_index_it_cannot_be(tmp_path: Path, index: str, reason: str) -> None:
    work = prepared_work_dir(tmp_path, 2)
    done = call("nodes", 'condor_pid=; node_main "$1"', str(work), env={"UPDRAFT_NODE_INDEX": index})
    assert done.rc == 1 and reason in done.stderr and done.stdout == ""


def test_a_node_past_its_die_time_writes_its_config_and_leaves_the_reason(tmp_path: Path) -> None:
    work = prepared_work_dir(tmp_path, 2)
    done = call("nodes", 'condor_pid=; node_main "$1"', str(work), env={"UPDRAFT_NODE_INDEX": "1"})
    node = work / "condor" / "node-1"
    assert done.rc == 1 and done.stdout == ""
    assert (node / "error").read_text() == "die time passed before condor could start\n"
    config = (node / "condor_config").read_text().splitlines()
    assert config[1:] == [
        f"include : {work}/condor/condor_config",
        f"LOCAL_DIR = {node}",
        f"STARTD_HISTORY = {node}/log/startd_history",
        *(f"{name}_NAME = glidein_42_7_1_node1@{config[4].split('@')[1]}" for name in ("MASTER", "STARTD")),
        "GLIDEIN_NodeIndex = 1",
        f"EXECUTE = {node}/execute",  # without --node-scratch, under the shared LOCAL_DIR as before
        f"LOCK = {node}/lock",
    ]


@pytest.mark.parametrize(
    ("results", "outcome"),
    [
        ({0: ("condor_exit", "0"), 1: ("condor_exit", "99")}, "condor_exit=0"),
        ({0: ("condor_exit", "0"), 1: ("condor_exit", "1")}, "condor_exit=1"),
        ({0: ("condor_exit", "0"), 1: ("error", "no disk")}, "FAILED at condor: node 1: no disk"),
        (
            {0: ("condor_exit", "0")},
            "FAILED at condor: node 1 of 2 left no result (node launcher exited with status 3)",
        ),
    ],
)
def test_the_head_collects_every_node_result(tmp_path: Path, results: dict[int, tuple[str, str]], outcome: str) -> None:
    for index, (name, content) in results.items():
        (tmp_path / "condor" / f"node-{index}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "condor" / f"node-{index}" / name).write_text(content + "\n")
    # The die time has passed: a node's non-zero exit is reported, not failed.
    done = call(
        "nodes",
        'work_dir="$1" nodes=2 die_time=1; collect_node_results 3; echo "condor_exit=$condor_exit"',
        str(tmp_path),
        also=("condor",),
    )
    assert outcome in done.stdout + done.stderr


# --- history ------------------------------------------------------------------


def ad(**attrs: object) -> str:
    return "".join(f"{name} = {value}\n" for name, value in attrs.items()) + "*** ClusterId=1 ProcId=0\n"


def test_history_totals_sum_jobs_busy_time_cores_and_goodput(tmp_path: Path) -> None:
    history = tmp_path / "startd_history"
    history.write_text(
        ad(JobDuration="100.0", RequestCpus=4, ExitCode=0)
        + ad(CompletionDate=2000, JobCurrentStartDate=1700, ExitBySignal="true", BadputCausedByPreemption="true")
        + ad(RemoteWallClockTime="50.0", RequestCpus="ifThenElse(x, 2, 1)", ExitBySignal="true")
    )
    assert call("history", 'history_totals "$1"', str(history)).stdout == f"3 450 {400 + 300 + 50} {400 + 50}\n"


def test_most_starts_within_a_window(tmp_path: Path) -> None:
    history = tmp_path / "startd_history"
    history.write_text(
        "".join(ad(JobCurrentStartDate=start) for start in (100, 700, 130, 160))
        + ad(JobStartDate=190)
        + ad(JobDuration=5)
    )
    assert call("history", 'most_starts_within "$1" 60', str(history)).stdout == "2\n"
    assert call("history", 'most_starts_within "$1" 91', str(history)).stdout == "4\n"


def test_a_multi_node_pilot_reads_every_node_history(tmp_path: Path) -> None:
    for index in (0, 2):
        log = tmp_path / "condor" / f"node-{index}" / "log"
        log.mkdir(parents=True)
        (log / "startd_history").write_text(ad(JobDuration=10))
    done = call("history", 'work_dir="$1" nodes=3; history_files; count_jobs', str(tmp_path))
    assert done.stdout.splitlines() == [
        f"{tmp_path}/condor/node-0/log/startd_history",
        f"{tmp_path}/condor/node-2/log/startd_history",
        "2 20 20 0",
    ]


# --- report -------------------------------------------------------------------


def test_the_report_is_one_key_per_line_between_its_markers(tmp_path: Path) -> None:
    (tmp_path / "validation.results").write_text("entry/check.sh OK\nfrontend/vo.sh network no route\n")
    state = (
        "status=failed failed_step=validate reason='two\nlines' factory=fac entry=site1 frontend=vo group=main "
        "security_class=pilot job_id=42.7 credential_id=c glidein_name=g dry_run=1 start_time=1 "
        "retire_time= die_time= retire_clamped=no condor_exit= condor_source= nodes=1 cpus= "
        'blackhole_jobs=0 blackhole_window=600 work_dir="$1" validation_file="$1/validation.results"'
    )
    lines = call("report", f"{state}; print_report", str(tmp_path), also=("history",)).stdout.splitlines()
    assert lines[0] == "=== UPDRAFT PILOT REPORT BEGIN ===" and lines[-1] == "=== UPDRAFT PILOT REPORT END ==="
    assert all(re.fullmatch(r"[a-z_0-9.]+=.*", line) for line in lines[1:-1]), lines
    keys = [line.split("=", 1)[0] for line in lines[1:-1]]
    assert keys[:4] == ["report_version", "status", "failed_step", "reason"]
    assert "reason=two lines" in lines and "report_version=2" in lines
    assert lines[-7:-1] == [
        "validation.1=entry/check.sh OK",
        "validation.2=frontend/vo.sh network no route",
        "jobs_run=0",
        "busy_seconds=0",
        "busy_core_seconds=0",
        "goodput_core_seconds=0",
    ]

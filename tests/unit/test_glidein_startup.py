"""glidein_startup.sh, run for real with a POSIX sh (dash where present) in --dry-run.

Every test stages files in a tmp folder, lists them in a file:// manifest and
reads the pilot's report back with `parse_report`, as the factory will.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from updraft.glidein.report import REPORT_BEGIN, REPORT_END, PilotReport, parse_report

from .glidein_helpers import PILOT_SCRIPT, serving

SCRIPT = PILOT_SCRIPT
SHELL = shutil.which("dash") or "/bin/sh"

IDENTITY = {
    "UPDRAFT_FACTORY": "lab-factory",
    "UPDRAFT_ENTRY": "site1",
    "UPDRAFT_FRONTEND": "lab-vo",
    "UPDRAFT_GROUP": "main",
    "UPDRAFT_SECURITY_CLASS": "pilot",
    "UPDRAFT_CREDENTIAL_ID": "lab-vo.main.token1",
    "UPDRAFT_JOB_ID": "42.7",
}

OK_SCRIPT = "#!/bin/sh\nexit 0\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    work: Path

    @property
    def report(self) -> PilotReport:
        report = parse_report(self.stdout)
        assert report is not None, self.stdout + self.stderr
        return report

    @property
    def config(self) -> str:
        return (self.work / "condor" / "condor_config").read_text()


class Pilot:
    """Served folders, the factory's and the frontend's manifests, and a way to run the pilot."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.served = tmp_path / "served"
        self.served.mkdir()
        self.served_frontend = tmp_path / "served-frontend"
        self.served_frontend.mkdir()
        self.work = tmp_path / "work"
        self.lines: list[str] = []
        self.frontend_lines: list[str] | None = None
        """None: the pilot gets no frontend manifest."""

    def add(self, path: str, content: str, kind: str = "file", frontend: bool = False) -> None:
        """Serve a file and list it in the factory's manifest (or the frontend's)."""
        target = (self.served_frontend if frontend else self.served) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        self.listing(frontend).append(f"{sha256(content.encode())}  {path}  {kind}")

    def listing(self, frontend: bool = False) -> list[str]:
        if not frontend:
            return self.lines
        if self.frontend_lines is None:
            self.frontend_lines = []
        return self.frontend_lines

    def manifest(self) -> tuple[str, str]:
        return _write_manifest(self.served, self.lines)

    def frontend_manifest(self) -> tuple[str, str]:
        return _write_manifest(self.served_frontend, self.frontend_lines or [])

    def run(
        self,
        *extra: str,
        env: dict[str, str] | None = None,
        manifest: bool = True,
        lifetime: tuple[str, ...] = ("--max-walltime", "3600"),
        dry_run: bool = True,
    ) -> Run:
        args: list[str] = []
        if manifest:
            url, digest = self.manifest()
            args = ["--manifest-url", url, "--manifest-sha256", digest]
            if self.frontend_lines is not None:
                url, digest = self.frontend_manifest()
                args += ["--frontend-manifest-url", url, "--frontend-manifest-sha256", digest]
        args += [
            "--work-dir",
            str(self.work),
            "--collector",
            "127.0.0.1:29618",
            *lifetime,
            "--failure-sleep",
            "0",
            *(["--dry-run"] if dry_run else []),
            *extra,
        ]
        full_env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            "UPDRAFT_FAILURE_SLEEP": "0",
            **IDENTITY,
            **(env or {}),
        }
        done = subprocess.run(
            [SHELL, str(SCRIPT), *args], env=full_env, cwd=self.root, capture_output=True, text=True, timeout=20
        )
        return Run(done.returncode, done.stdout, done.stderr, self.work)


def _write_manifest(folder: Path, lines: list[str]) -> tuple[str, str]:
    text = "# sha256  path  kind\n" + "\n".join(lines) + "\n"
    (folder / "manifest").write_text(text)
    return f"file://{folder}/manifest", sha256(text.encode())


@pytest.fixture
def pilot(tmp_path: Path) -> Pilot:
    return Pilot(tmp_path)


def assert_failed(run: Run, step: str, *in_reason: str) -> PilotReport:
    assert run.rc != 0
    report = run.report
    assert (report.status, report.failed_step) == ("failed", step), report
    for text in in_reason:
        assert text in report.reason, report.reason
    return report


# --- the script itself -------------------------------------------------------


def test_script_parses_as_posix_sh() -> None:
    subprocess.run([SHELL, "-n", str(SCRIPT)], check=True)


@pytest.mark.parametrize("tool", [["shellcheck", "-s", "sh"], ["checkbashisms"]])
def test_script_is_clean_posix_sh(tool: list[str]) -> None:
    assert shutil.which(tool[0]), f"{tool[0]} is not installed (scripts/system-deps installs it)"
    done = subprocess.run([*tool, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_success_reports_ok_with_identity(pilot: Pilot) -> None:
    pilot.add("check.sh", OK_SCRIPT, "validate-entry")
    run = pilot.run()
    assert run.rc == 0, run.stderr
    report = run.report
    assert report.ok and report.failed_step == "" and report.dry_run
    assert (report.factory, report.entry, report.frontend, report.group) == ("lab-factory", "site1", "lab-vo", "main")
    assert (report.job_id, report.credential_id) == ("42.7", "lab-vo.main.token1")
    assert report.end_time is not None and report.start_time is not None
    assert report.lifetime == report.end_time - report.start_time
    assert (report.jobs_run, report.busy_seconds) == (0, 0)
    # The report is the only thing on stdout; progress goes to stderr.
    assert run.stdout.startswith(REPORT_BEGIN) and run.stdout.rstrip().endswith(REPORT_END)


# --- arguments -----------------------------------------------------------------


def test_unknown_option_is_named(pilot: Pilot) -> None:
    assert_failed(pilot.run("--frobnicate"), "args", "unknown option: --frobnicate")


def test_option_without_value_is_named(pilot: Pilot) -> None:
    assert_failed(pilot.run("--spread"), "args", "--spread needs a value")


def test_missing_manifest_url_is_named(pilot: Pilot) -> None:
    assert_failed(pilot.run(manifest=False), "args", "--manifest-url")


def test_missing_identity_is_named(pilot: Pilot) -> None:
    assert_failed(pilot.run(env={"UPDRAFT_GROUP": ""}), "args", "UPDRAFT_GROUP")


def test_non_numeric_seconds_are_refused(pilot: Pilot) -> None:
    assert_failed(pilot.run("--max-idle", "soon"), "args", "--max-idle", "soon")


def test_bad_job_id_is_refused(pilot: Pilot) -> None:
    assert_failed(pilot.run(env={"UPDRAFT_JOB_ID": "42"}), "args", "cluster.proc")


def test_environment_fallbacks_replace_arguments(pilot: Pilot) -> None:
    url, digest = pilot.manifest()
    run = pilot.run(
        manifest=False,
        lifetime=(),
        env={
            "UPDRAFT_MANIFEST_URL": url,
            "UPDRAFT_MANIFEST_SHA256": digest.upper(),
            "GLIDEIN_Max_Walltime": "1000",
            "GLIDEIN_Shutdown_Margin": "100",
        },
    )
    report = run.report
    assert report.ok, report.reason
    assert report.start_time is not None
    assert report.die_time == report.start_time + 900


def test_option_equals_value_form(pilot: Pilot) -> None:
    report = pilot.run("--shutdown-margin=60").report
    assert report.ok and report.start_time is not None
    assert report.die_time == report.start_time + 3600 - 60


# --- fetch and verify ----------------------------------------------------------


def test_manifest_sha_mismatch_stops_the_pilot(pilot: Pilot) -> None:
    pilot.add("check.sh", OK_SCRIPT, "validate-entry")
    url, _ = pilot.manifest()
    run = pilot.run("--manifest-url", url, "--manifest-sha256", "0" * 64, manifest=False)
    assert_failed(run, "verify", "manifest")
    assert not (pilot.work / "validation").exists()


def test_tampered_file_stops_the_pilot_naming_it(pilot: Pilot) -> None:
    pilot.add("ok.sh", OK_SCRIPT, "validate-entry")
    pilot.add("lib/tools.tar", "original")
    pilot.manifest()
    (pilot.served / "lib" / "tools.tar").write_text("tampered")
    url, digest = f"file://{pilot.served}/manifest", sha256((pilot.served / "manifest").read_bytes())
    run = pilot.run("--manifest-url", url, "--manifest-sha256", digest, manifest=False)
    assert_failed(run, "verify", "lib/tools.tar")


def test_missing_listed_file_fails_fetch_naming_it(pilot: Pilot) -> None:
    pilot.add("gone.sh", OK_SCRIPT, "validate-entry")
    url, digest = pilot.manifest()
    (pilot.served / "gone.sh").unlink()
    run = pilot.run("--manifest-url", url, "--manifest-sha256", digest, manifest=False)
    assert_failed(run, "fetch", "gone.sh")


@pytest.mark.parametrize(
    "line",
    [
        f"{'a' * 64}  ../escape.sh  file",
        f"{'a' * 64}  /etc/passwd  file",
        f"{'a' * 64}  x.sh  run-me",
        "abc  x.sh  file",
        f"{'a' * 64}  x.sh",
    ],
)
def test_malformed_manifest_lines_are_refused(pilot: Pilot, line: str) -> None:
    pilot.lines.append(line)
    assert_failed(pilot.run(), "verify", "manifest line 2")


def test_fetches_over_http(pilot: Pilot) -> None:
    pilot.add("check.sh", OK_SCRIPT, "validate-entry")
    _, digest = pilot.manifest()
    with serving(pilot.served) as base:
        run = pilot.run("--manifest-url", f"{base}/manifest", "--manifest-sha256", digest, manifest=False)
    assert run.report.ok, run.stderr
    assert run.report.validations[0].ok


# --- two manifests: the factory's (entry) and the frontend's --------------------


def test_each_manifest_stages_its_files_in_its_own_folder(pilot: Pilot) -> None:
    # The same path in both manifests: fetched next to each manifest, kept apart.
    pilot.add("lib/tools.txt", "from the factory")
    pilot.add("lib/tools.txt", "from the frontend", frontend=True)
    pilot.add(
        "where.sh",
        '#!/bin/sh\necho "$UPDRAFT_FILES_DIR" > "$UPDRAFT_WORK_DIR/files_dir"\n',
        "validate-frontend",
        frontend=True,
    )
    report = pilot.run().report
    assert report.ok, report.reason
    assert (pilot.work / "files" / "entry" / "lib" / "tools.txt").read_text() == "from the factory"
    assert (pilot.work / "files" / "frontend" / "lib" / "tools.txt").read_text() == "from the frontend"
    assert (pilot.work / "files_dir").read_text().strip() == f"{pilot.work}/files"


@pytest.mark.parametrize(
    ("frontend", "kind", "message"),
    [
        (True, "validate-entry", "frontend manifest line 3: kind validate-entry belongs in the factory's manifest"),
        (
            False,
            "validate-frontend",
            "factory manifest line 3: kind validate-frontend belongs in the frontend's manifest",
        ),
    ],
)
def test_a_kind_in_the_wrong_manifest_is_refused(pilot: Pilot, frontend: bool, kind: str, message: str) -> None:
    pilot.add("ok.txt", "fine", frontend=frontend)
    pilot.add("misplaced.sh", OK_SCRIPT, kind, frontend=frontend)
    pilot.listing(not frontend)  # both manifests are given
    assert_failed(pilot.run(), "verify", message)


def test_frontend_manifest_sha_mismatch_names_the_frontend_manifest(pilot: Pilot) -> None:
    url, _ = pilot.frontend_manifest()
    run = pilot.run("--frontend-manifest-url", url, "--frontend-manifest-sha256", "a" * 64)
    assert_failed(run, "verify", "frontend manifest")


def test_tampered_frontend_file_names_the_frontend_manifest(pilot: Pilot) -> None:
    pilot.add("vo/check.sh", OK_SCRIPT, "validate-frontend", frontend=True)
    url, digest = pilot.frontend_manifest()
    (pilot.served_frontend / "vo" / "check.sh").write_text("tampered")
    run = pilot.run("--frontend-manifest-url", url, "--frontend-manifest-sha256", digest)
    assert_failed(run, "verify", "vo/check.sh (frontend manifest)")


@pytest.mark.parametrize("given", ["--frontend-manifest-url", "--frontend-manifest-sha256"])
def test_frontend_manifest_needs_both_url_and_sha(pilot: Pilot, given: str) -> None:
    value = "file:///nowhere/manifest" if given.endswith("url") else "b" * 64
    assert_failed(pilot.run(given, value), "args", "give both or neither", given)


def test_frontend_manifest_from_the_environment(pilot: Pilot) -> None:
    pilot.add("vo/check.sh", _recording_script("vo"), "validate-frontend", frontend=True)
    url, digest = pilot.frontend_manifest()
    report = pilot.run(
        env={"UPDRAFT_FRONTEND_MANIFEST_URL": url, "UPDRAFT_FRONTEND_MANIFEST_SHA256": digest.upper()}
    ).report
    assert report.ok, report.reason
    assert [v.script for v in report.validations] == ["frontend/vo/check.sh"]


def test_staged_config_includes_factory_then_frontend_before_pilot_settings(pilot: Pilot) -> None:
    pilot.add("vo/b.config", "B = 1\n", "condor-config", frontend=True)
    pilot.add("site/a.config", "A = 1\n", "condor-config")
    pilot.add("vo/c.config", "C = 1\n", "condor-config", frontend=True)
    lines = pilot.run().config.splitlines()
    includes = [line for line in lines if line.startswith("include : ")]
    assert includes == [
        f"include : {pilot.work}/files/entry/site/a.config",
        f"include : {pilot.work}/files/frontend/vo/b.config",
        f"include : {pilot.work}/files/frontend/vo/c.config",
    ]
    assert lines.index(includes[-1]) < lines.index("IS_GLIDEIN = True")


# --- validation ----------------------------------------------------------------


def _recording_script(name: str) -> str:
    return f'#!/bin/sh\necho {name} >> "$UPDRAFT_WORK_DIR/order"\nexit 0\n'


def test_entry_validations_run_before_frontend_ones(pilot: Pilot) -> None:
    pilot.add("checks/f1.sh", _recording_script("f1"), "validate-frontend", frontend=True)
    pilot.add("checks/e1.sh", _recording_script("e1"), "validate-entry")
    pilot.add("checks/f2.sh", _recording_script("f2"), "validate-frontend", frontend=True)
    pilot.add("checks/e2.sh", _recording_script("e2"), "validate-entry")
    report = pilot.run().report
    assert report.ok, report.reason
    assert (pilot.work / "order").read_text().split() == ["e1", "e2", "f1", "f2"]
    assert [v.script for v in report.validations] == [
        "entry/checks/e1.sh",
        "entry/checks/e2.sh",
        "frontend/checks/f1.sh",
        "frontend/checks/f2.sh",
    ]


def test_failing_validation_reports_kind_and_message(pilot: Pilot) -> None:
    pilot.add("e.sh", OK_SCRIPT, "validate-entry")
    pilot.add(
        "f.sh",
        "#!/bin/sh\necho checking\n"
        "echo 'UPDRAFT_VALIDATION kind=network message=cannot reach cvmfs: timeout'\nexit 2\n",
        "validate-frontend",
        frontend=True,
    )
    pilot.add("g.sh", "#!/bin/sh\nexit 5\n", "validate-frontend", frontend=True)
    report = assert_failed(pilot.run(), "validate", "frontend/f.sh", "cannot reach cvmfs")
    assert [(v.script, v.result, v.message) for v in report.validations] == [
        ("entry/e.sh", "OK", ""),
        ("frontend/f.sh", "network", "cannot reach cvmfs: timeout"),
        ("frontend/g.sh", "unknown", "exited 5 without an UPDRAFT_VALIDATION line"),
    ]
    assert report.retire_time is None  # stopped before the lifetime step


def test_failure_sleeps_before_exiting(pilot: Pilot) -> None:
    # dash has no sleep builtin: a fake one on PATH records what was asked.
    bin_dir = pilot.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "$1" > {pilot.root}/slept\n')
    (bin_dir / "sleep").chmod(0o755)
    run = pilot.run(
        "--failure-sleep",
        "33",
        "--bogus",
        "--failure-sleep",
        "1200",
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "UPDRAFT_FAILURE_SLEEP": "77"},
    )
    assert_failed(run, "args", "--bogus")
    # Parsing stopped at --bogus: the last value read before it counts.
    assert (pilot.root / "slept").read_text().strip() == "33"


# --- lifetime ------------------------------------------------------------------


def test_lifetime_without_spread_is_exact(pilot: Pilot) -> None:
    report = pilot.run("--max-job-time", "600", "--shutdown-margin", "300", "--spread", "0").report
    assert report.start_time is not None
    assert report.die_time == report.start_time + 3600 - 300
    assert report.retire_time == report.start_time + 3600 - 300 - 600
    assert not report.retire_clamped


def test_lifetime_spread_stays_within_bounds(pilot: Pilot) -> None:
    retires = set()
    for _ in range(3):
        report = pilot.run("--max-job-time", "600", "--shutdown-margin", "300", "--spread", "1000").report
        assert report.start_time is not None and report.retire_time is not None
        latest = report.start_time + 3600 - 300 - 600
        assert latest - 1000 <= report.retire_time <= latest
        retires.add(latest - report.retire_time)
    assert len(retires) > 1  # 3 draws in [0, 1000] all equal: not random


def test_retire_before_start_is_clamped_and_reported(pilot: Pilot) -> None:
    report = pilot.run("--max-job-time", "7200").report
    assert report.ok and report.retire_clamped
    assert report.retire_time == report.start_time


def test_walltime_within_shutdown_margin_fails(pilot: Pilot) -> None:
    assert_failed(pilot.run(lifetime=("--max-walltime", "200")), "lifetime", "--shutdown-margin")


# --- condor configuration ------------------------------------------------------


def test_config_advertises_identity_and_lifetime(pilot: Pilot) -> None:
    run = pilot.run(
        "--max-idle",
        "900",
        env={
            "GLIDEIN_Site": 'Site "1"',
            "GLIDEIN_Schedd": "vo-schedd@lab",
            "GLIDEIN_CPUS": "4",
            "GLIDEIN_MaxMemMBs": "8000",
        },
    )
    report, config = run.report, run.config
    assert report.ok
    for line in [
        "IS_GLIDEIN = True",
        'GLIDEIN_Site = "Site \\"1\\""',
        'GLIDEIN_Entry_Name = "site1"',
        'GLIDEIN_Factory = "lab-factory"',
        'GLIDEIN_Name = "lab-factory"',
        'GLIDECLIENT_Name = "lab-vo"',
        'GLIDECLIENT_Group = "main"',
        'GLIDEIN_Schedd = "vo-schedd@lab"',
        "GLIDEIN_ClusterId = 42",
        "GLIDEIN_ProcId = 7",
        'GLIDEIN_CredentialIdentifier = "lab-vo.main.token1"',
        f"GLIDEIN_ToRetire = {report.retire_time}",
        f"GLIDEIN_ToDie = {report.die_time}",
        "GLIDEIN_Max_Walltime = 3600",
        "STARTD_NOCLAIM_SHUTDOWN = 900",
        "COLLECTOR_HOST = 127.0.0.1:29618",
        "NUM_CPUS = 4",
        "MEMORY = 8000",
        "SLOT_TYPE_1_PARTITIONABLE = True",
        "RunBenchmarks = False",
        f"STARTD_NAME = {report.glidein_name}",
    ]:
        assert line in config.splitlines(), line
    attrs = next(line for line in config.splitlines() if line.startswith("STARTD_ATTRS"))
    for name in [
        "IS_GLIDEIN",
        "GLIDEIN_Site",
        "GLIDEIN_Entry_Name",
        "GLIDEIN_Factory",
        "GLIDEIN_Name",
        "GLIDECLIENT_Name",
        "GLIDECLIENT_Group",
        "GLIDEIN_Schedd",
        "GLIDEIN_ClusterId",
        "GLIDEIN_ProcId",
        "GLIDEIN_CredentialIdentifier",
        "GLIDEIN_ToRetire",
        "GLIDEIN_ToDie",
        "GLIDEIN_Max_Walltime",
    ]:
        assert f" {name}" in attrs, name


def test_start_combines_entry_group_and_retire(pilot: Pilot) -> None:
    run = pilot.run(
        env={"GLIDEIN_Entry_Start": "TARGET.RequestCpus <= 4", "GLIDECLIENT_Group_Start": 'TARGET.Owner == "alice"'}
    )
    assert (
        'START = (TARGET.RequestCpus <= 4) && (TARGET.Owner == "alice") && (time() < GLIDEIN_ToRetire)'
        in run.config.splitlines()
    )


def test_start_without_expressions_only_retires(pilot: Pilot) -> None:
    assert "START = (time() < GLIDEIN_ToRetire)" in pilot.run().config.splitlines()


def test_single_node_pilot_advertises_node_count_and_index(pilot: Pilot) -> None:
    run = pilot.run()
    lines = run.config.splitlines()
    assert "GLIDEIN_Nodes = 1" in lines and "GLIDEIN_NodeIndex = 0" in lines
    attrs = next(line for line in lines if line.startswith("STARTD_ATTRS"))
    assert " GLIDEIN_Nodes" in attrs and " GLIDEIN_NodeIndex" in attrs
    assert f"STARTD_NAME = {run.report.glidein_name}" in lines


def test_fixed_slots_and_staged_config_included_before_pilot_settings(pilot: Pilot) -> None:
    pilot.add("vo/security.config", "SEC_DEFAULT_AUTHENTICATION = REQUIRED\n", "condor-config")
    config = pilot.run(env={"GLIDEIN_Slots_Layout": "fixed", "GLIDEIN_CPUS": "3"}).config
    lines = config.splitlines()
    include = f"include : {pilot.work}/files/entry/vo/security.config"
    assert include in lines and "NUM_SLOTS = 3" in lines
    assert "SLOT_TYPE_1_PARTITIONABLE = True" not in lines
    assert lines.index(include) < lines.index("IS_GLIDEIN = True")


def test_bad_slot_layout_fails_config(pilot: Pilot) -> None:
    assert_failed(pilot.run(env={"GLIDEIN_Slots_Layout": "dynamic"}), "config", "GLIDEIN_Slots_Layout")


def test_line_break_in_an_advertised_value_fails_config(pilot: Pilot) -> None:
    run = pilot.run(env={"GLIDEIN_Site": "site\nSTART = True"})
    assert_failed(run, "config", "GLIDEIN_Site")


# --- running condor ------------------------------------------------------------


def fake_condor(root: Path, master: str) -> Path:
    """An HTCondor install in ROOT/condor whose condor_master is the sh script MASTER."""
    sbin = root / "condor" / "sbin"
    sbin.mkdir(parents=True)
    (sbin / "condor_master").write_text(master)
    (sbin / "condor_master").chmod(0o755)
    return root / "condor"


def history_master(root: Path) -> str:
    """A condor_master for node <i> (GLIDEIN_NodeIndex in its config): it prints a line on
    stdout, records its config's path in ROOT/master.<i>, appends ROOT/history.<i> to its
    STARTD_HISTORY, and exits with ROOT/exit.<i> (default 0)."""
    return (
        "#!/bin/sh\n"
        'value() { sed -n "s/^$1 = //p" "$CONDOR_CONFIG" | tail -n 1; }\n'
        "index=$(value GLIDEIN_NodeIndex)\n"
        'echo "condor_master of node $index says hello on stdout"\n'
        f'echo "$CONDOR_CONFIG" > {root}/master.$index\n'
        f'if [ -f {root}/history.$index ]; then cat {root}/history.$index >> "$(value STARTD_HISTORY)"; fi\n'
        f'if [ -f {root}/exit.$index ]; then exit "$(cat {root}/exit.$index)"; fi\n'
    )


def history_ad(banner: str = "ClusterId=1 ProcId=0", **attrs: object) -> str:
    """One job ad as the startd history holds it: attributes, then the *** banner."""
    return "".join(f"{name} = {value}\n" for name, value in attrs.items()) + f"*** {banner}\n"


def _fake_condor(pilot: Pilot, exit_status: int) -> Path:
    """An HTCondor install whose condor_master records its arguments and environment."""
    return fake_condor(
        pilot.root,
        f'#!/bin/sh\necho "$@" > {pilot.root}/master.args\nenv > {pilot.root}/master.env\nexit {exit_status}\n',
    )


def test_condor_master_runs_in_a_clean_environment(pilot: Pilot) -> None:
    condor = _fake_condor(pilot, 0)
    run = pilot.run("--condor-dir", str(condor), dry_run=False, env={"_CONDOR_SEC_SESSION": "outer"})
    report = run.report
    assert report.ok and report.condor_exit == 0 and not report.dry_run, run.stderr
    assert (pilot.root / "master.args").read_text().split() == ["-f"]
    env = dict(line.split("=", 1) for line in (pilot.root / "master.env").read_text().splitlines())
    assert env["CONDOR_CONFIG"] == f"{pilot.work}/condor/condor_config"
    assert env["PATH"].startswith(f"{condor}/sbin:{condor}/bin:")
    # Nothing of the outer job's environment leaks into the inner daemons.
    assert not {"_CONDOR_SEC_SESSION", "UPDRAFT_CREDENTIAL_ID", "UPDRAFT_FACTORY"} & env.keys()
    assert f"RELEASE_DIR = {condor}" in run.config.splitlines()


def test_condor_master_failure_fails_the_pilot(pilot: Pilot) -> None:
    condor = _fake_condor(pilot, 3)
    report = assert_failed(pilot.run("--condor-dir", str(condor), dry_run=False), "condor", "status 3")
    assert report.condor_exit == 3


def test_missing_condor_fails_the_condor_step(pilot: Pilot) -> None:
    run = pilot.run("--condor-dir", str(pilot.root / "nowhere"), dry_run=False)
    assert_failed(run, "condor", "condor_master not found")


# --- report --------------------------------------------------------------------


def test_credential_content_never_reaches_the_output(pilot: Pilot) -> None:
    secret = "eyJhbGciOiJSUzI1NiJ9.SECRET-TOKEN"
    run = pilot.run("--unknown", env={"UPDRAFT_CREDENTIAL": secret, "_CONDOR_SEC_TOKEN": secret})
    assert secret not in run.stdout and secret not in run.stderr
    assert run.report.credential_id == "lab-vo.main.token1"


def test_jobs_and_busy_time_come_from_the_startd_history(pilot: Pilot) -> None:
    log = pilot.work / "condor" / "log"
    log.mkdir(parents=True)
    (log / "startd_history").write_text(
        'JobDuration = 100.5\nOwner = "alice"\n*** ClusterId=1 ProcId=0\n'
        "CompletionDate = 2000\nJobCurrentStartDate = 1700\n*** ClusterId=1 ProcId=1\n"
    )
    report = pilot.run().report
    assert (report.jobs_run, report.busy_seconds) == (2, 400)


def test_core_seconds_and_goodput_come_from_the_startd_history(pilot: Pilot) -> None:
    log = pilot.work / "condor" / "log"
    log.mkdir(parents=True)
    (log / "startd_history").write_text(
        # 100 s on 4 cores, exited by itself: goodput.
        history_ad(JobDuration="100.0", RequestCpus=4, ExitBySignal="false", ExitCode=0)
        # 300 s on 1 core (RequestCpus absent), vacated by the startd: not goodput.
        + history_ad(
            CompletionDate=2000,
            JobCurrentStartDate=1700,
            ExitBySignal="true",
            ExitSignal=15,
            BadputCausedByPreemption="true",
        )
        # 50 s, RequestCpus an expression (counts 1), died on its own signal: goodput.
        + history_ad(RemoteWallClockTime="50.0", RequestCpus="ifThenElse(x, 2, 1)", ExitBySignal="true")
        # 10 s on 2 cores, never ended by itself (no exit attributes): not goodput.
        + history_ad(JobDuration=10, RequestCpus="2.0", BadputCausedByDraining="false")
        # Exited by itself while the node drained: vacated, not goodput.
        + history_ad(JobDuration=7, ExitCode=0, BadputCausedByDraining="TRUE")
    )
    report = pilot.run().report
    assert (report.jobs_run, report.busy_seconds) == (5, 467)
    assert report.busy_core_seconds == 400 + 300 + 50 + 20 + 7
    assert report.goodput_core_seconds == 400 + 50


def test_report_version_2_says_where_condor_came_from_and_what_each_node_offered(pilot: Pilot) -> None:
    condor = _fake_condor(pilot, 0)
    report = pilot.run("--condor-dir", str(condor), env={"GLIDEIN_CPUS": "6"}).report
    assert report.ok and report.report_version == 2
    assert (report.condor_source, report.nodes, report.cpus) == ("condor-dir", 1, 6)
    assert (report.blackhole_jobs, report.blackhole_window) == (0, 600)
    assert report.extra == ()  # every key the pilot prints is a known one


def test_condor_on_path_is_the_last_resort(pilot: Pilot) -> None:
    condor = _fake_condor(pilot, 0)
    run = pilot.run(env={"PATH": f"{condor}/sbin:{os.environ['PATH']}"})
    assert run.report.condor_source == "path"
    assert f"RELEASE_DIR = {condor}" in run.config.splitlines()


def test_report_before_config_has_no_cpus_and_one_node(pilot: Pilot) -> None:
    report = pilot.run("--bogus").report
    assert (report.cpus, report.nodes, report.condor_source) == (0, 1, "")


def test_reason_with_line_breaks_stays_on_one_line(pilot: Pilot) -> None:
    pilot.add("f.sh", "#!/bin/sh\nexit 1\n", "validate-entry")
    run = pilot.run(env={"UPDRAFT_ENTRY": "site1\n=== UPDRAFT PILOT REPORT END ==="})
    report = run.report
    assert report.status == "failed"
    assert report.entry == "site1 === UPDRAFT PILOT REPORT END ==="


# --- the pilot token -----------------------------------------------------------

PILOT_TOKEN = "eyJhbGciOiJIUzI1NiIsImtpZCI6IlBPT0wifQ.eyJzdWIiOiJwaWxvdEBsYWIifQ.c2lnbmF0dXJlLWNhbmFyeQ"


def test_the_pilot_token_is_installed_privately_and_only_the_token_method_is_used(pilot: Pilot) -> None:
    pilot.add("check.sh", OK_SCRIPT, "validate-entry")
    (pilot.root / "abc.token").write_text(PILOT_TOKEN + "\n")
    run = pilot.run(env={"UPDRAFT_PILOT_TOKEN": "abc.token"})
    assert run.rc == 0, run.stderr
    installed = pilot.work / "condor" / "tokens.d" / "pilot.token"
    assert installed.read_text() == PILOT_TOKEN + "\n"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    assert stat.S_IMODE(installed.parent.stat().st_mode) == 0o700
    assert f"SEC_TOKEN_DIRECTORY = {installed.parent}\n" in run.config
    assert "SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS\n" in run.config
    assert PILOT_TOKEN not in run.stdout + run.stderr + run.config
    assert not (pilot.root / "abc.token").exists()  # the sandbox copy is gone


def test_without_a_token_the_pilot_config_names_no_token_directory(pilot: Pilot) -> None:
    pilot.add("check.sh", OK_SCRIPT, "validate-entry")
    run = pilot.run()
    assert run.rc == 0, run.stderr
    assert "SEC_TOKEN_DIRECTORY" not in run.config


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.token", "the pilot token missing.token did not arrive with the pilot"),
        ("../abc.token", "must be a file name in the sandbox"),
        (".hidden", "must be a file name in the sandbox"),
    ],
)
def test_a_missing_or_odd_token_stops_the_pilot_at_the_token_step(pilot: Pilot, name: str, message: str) -> None:
    pilot.add("check.sh", OK_SCRIPT, "validate-entry")
    run = pilot.run(env={"UPDRAFT_PILOT_TOKEN": name})
    assert run.rc != 0
    assert run.report.failed_step == "token" and message in run.report.reason

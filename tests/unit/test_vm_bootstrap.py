"""glidein/vm/updraft-vm-bootstrap: the entry script a cloud pilot's image runs at boot.

Function by function (the script sourced with UPDRAFT_VM_BOOTSTRAP_SOURCE_ONLY
so nothing runs), then whole: against a staging area and fake metadata
services served on 127.0.0.1 by the test, with a fake glidein_startup.sh that
writes down what it was given. The real glidein booting from real user data
is the lab's test.

The tests run as root, as the bootstrap does on a VM: the glidein runs as
`nobody`, a fake iptables and a fake shutdown come first in PATH (and
/usr/sbin is left out of it, so the real ones cannot be reached).
"""

from __future__ import annotations

import configparser
import fnmatch
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.glidein_helpers import serving
from updraft import userdata
from updraft.glidein import vm_bootstrap_path
from updraft.userdata import UserDataError

SCRIPT = vm_bootstrap_path()
REPO = Path(__file__).resolve().parents[2]
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwaWxvdEBsYWIiLCJzY29wZSI6ImNvbmRvcjovQURWRVJUSVNFX1NUQVJURCJ9.c2ln"
IMDS_SESSION = "imds-session-token-7f3a"
NOBODY = 65534
FAKE_GLIDEIN = r"""#!/bin/sh
# Writes down what it was given, in its cwd.
pwd >cwd
id -u >uid
umask >umask
printf '%s\0' "$@" >args
env -0 >env
if [ -n "${UPDRAFT_PILOT_TOKEN:-}" ]; then
    stat -c '%a %u' "$UPDRAFT_PILOT_TOKEN" >token-stat
    cat "$UPDRAFT_PILOT_TOKEN" >token-seen
fi
ls -A >listing
exit "${FAKE_EXIT:-0}"
"""
MARK = "UPDRAFT_USER_DATA=1"


# --- helpers -----------------------------------------------------------------------


def source_and_run(snippet: str, *args: str, user_data: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Bash with the script's functions defined, then `snippet`; `user_data` arrives as the file $1."""
    env = {"PATH": "/usr/bin:/bin", "UPDRAFT_VM_BOOTSTRAP_SOURCE_ONLY": "1"}
    code = f'. "{SCRIPT}"\n{snippet}'
    if user_data is None:
        return subprocess.run(["bash", "-c", code, "bash", *args], capture_output=True, text=True, env=env)
    fd, name = _tempfile(user_data)
    try:
        return subprocess.run(["bash", "-c", code, "bash", name, *args], capture_output=True, text=True, env=env)
    finally:
        os.close(fd)
        os.unlink(name)


def _tempfile(content: bytes) -> tuple[int, str]:
    import tempfile

    fd, name = tempfile.mkstemp(prefix="vmboot-ud-")
    os.write(fd, content)
    return fd, name


BASH_PARSE = """
load_user_data_file "$1"
parse_user_data "$user_data_text"
for ((i = 0; i < ${#ud_names[@]}; i++)); do printf '%s\\0%s\\0' "${ud_names[i]}" "${ud_values[i]}"; done
"""


def bash_parse(text: str) -> list[tuple[str, str]] | str:
    """The bootstrap's reading of `text`: its pairs, or its failure line."""
    fd, name = _tempfile(text.encode())
    os.close(fd)
    try:
        done = subprocess.run(
            ["bash", "-c", f'. "{SCRIPT}"\n{BASH_PARSE}', "bash", name],
            capture_output=True,
            env={"PATH": "/usr/bin:/bin", "UPDRAFT_VM_BOOTSTRAP_SOURCE_ONLY": "1"},
        )
    finally:
        os.unlink(name)
    out = done.stdout.decode()
    if done.returncode != 0:
        assert done.returncode == 1 and out.startswith("updraft-vm-bootstrap: step parse failed: "), (out, done.stderr)
        return out.removeprefix("updraft-vm-bootstrap: step parse failed: ").rstrip("\n")
    assert done.stderr == b""
    fields = out.split("\0")[:-1]
    return list(zip(fields[::2], fields[1::2], strict=True))


def python_parse(text: str) -> list[tuple[str, str]] | str:
    try:
        return userdata.parse(text)
    except UserDataError as err:
        return str(err)


@dataclass
class Staging:
    root: Path
    url: str

    def publish(self, glidein: bytes = FAKE_GLIDEIN.encode(), listed: bytes | None = None) -> tuple[str, str]:
        """A release with the glidein (listed with the digest of `listed`, default its own); manifest URL and sha."""
        release = self.root / "entry" / "abc123"
        release.mkdir(parents=True, exist_ok=True)
        (release / "glidein_startup.sh").write_bytes(glidein)
        (release / "check.sh").write_text("#!/bin/sh\n")
        manifest = (
            "# Updraft staging manifest: sha256  path  kind\n"
            f"{hashlib.sha256(b'#!/bin/sh' + bytes([10])).hexdigest()}  check.sh  validate-entry\n"
            f"{hashlib.sha256(glidein if listed is None else listed).hexdigest()}  glidein_startup.sh  file\n"
        )
        (release / "manifest").write_text(manifest)
        return f"{self.url}/entry/abc123/manifest", hashlib.sha256(manifest.encode()).hexdigest()


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Staging]:
    root = tmp_path / "www"
    root.mkdir()
    with serving(root) as url:
        yield Staging(root, url)


def public_part(
    manifest: tuple[str, str], env: list[tuple[str, str]] | None = None, args: list[str] | None = None
) -> str:
    return userdata.public_part(
        environment=env if env is not None else [("UPDRAFT_FACTORY", "fac"), ("GLIDEIN_Site", "Site A&B; ünï")],
        manifest_url=manifest[0],
        manifest_sha256=manifest[1],
        arguments=args if args is not None else ["--collector", "vo.example:9618", "two words", "a\nb", ""],
    )


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    work: Path
    fakes: Path
    seconds: float

    def read(self, name: str) -> str:
        return (self.work / name).read_text()

    @property
    def env(self) -> dict[str, str]:
        items = (self.work / "env").read_text().split("\0")[:-1]
        return dict(item.split("=", 1) for item in items)

    @property
    def args(self) -> list[str]:
        return (self.work / "args").read_text().split("\0")[:-1]

    @property
    def on_exit_ran(self) -> bool:
        return (self.fakes / "on-exit-ran").exists()


def run_bootstrap(tmp_path: Path, *options: str, on_exit: bool = True, timeout: float = 60) -> Run:
    """The script as a VM runs it (root, --user nobody), with fake iptables and shutdown first in PATH."""
    fakes = tmp_path / "fakes"
    fakes.mkdir(exist_ok=True)
    for tool in ("iptables", "shutdown"):
        (fakes / tool).write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >>"{fakes}/{tool}.calls"\n[ "$1" != -C ]\n')
        (fakes / tool).chmod(0o755)
    work = tmp_path / "work"
    extra = ["--on-exit", f"touch {fakes}/on-exit-ran"] if on_exit else []
    start = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), "--work-dir", str(work), "--user", "nobody", *extra, *options],
        capture_output=True,
        text=True,
        env={"PATH": f"{fakes}:/usr/bin:/bin"},
        timeout=timeout,
    )
    return Run(done.returncode, done.stdout, done.stderr, work, fakes, time.monotonic() - start)


def write_user_data(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user-data"
    path.write_text(text)
    return path


def assert_failed(run: Run, step: str, *texts: str) -> None:
    assert run.rc != 0, run.stdout
    lines = [line for line in run.stdout.splitlines() if " failed: " in line]
    assert len(lines) == 1, run.stdout
    assert lines[0].startswith(f"updraft-vm-bootstrap: step {step} failed: "), run.stdout
    for text in texts:
        assert text in lines[0], lines[0]
    assert run.on_exit_ran, "a failed bootstrap must still run --on-exit"
    assert TOKEN not in run.stdout + run.stderr


# --- the script itself ------------------------------------------------------------------


def test_script_is_shellcheck_clean_bash() -> None:
    assert shutil.which("shellcheck"), "shellcheck is not installed (scripts/system-deps installs it)"
    done = subprocess.run(["shellcheck", "-s", "bash", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.access(SCRIPT, os.X_OK)


def test_the_wheel_ships_the_script() -> None:
    # setup.cfg's package_data for updraft.glidein must match the script's path.
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["updraft.glidein"].split(",")]
    relative = SCRIPT.relative_to(REPO / "glidein").as_posix()
    assert any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns), patterns
    assert SCRIPT.is_file() and SCRIPT.parent.name == "vm"


# --- functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--frobnicate"], "step args failed: unknown option: --frobnicate"),
        (["--source"], "step args failed: --source needs a value"),
        (["--source", "azure"], "--source must be ec2 or gce, got azure"),
        (["--metadata-timeout", "0"], "--metadata-timeout must be a positive number of seconds"),
        (["--work-dir", "rel/dir"], "--work-dir must be an absolute path, got rel/dir"),
        ([], "started as root: --user names the unprivileged user"),
        (["--user", "no-such-user-here"], "no such user: no-such-user-here"),
        (["--user", "root"], "--user root is root: the glidein and its payload jobs must not run as root"),
    ],
)
def test_bad_options_fail_step_args(options: list[str], message: str) -> None:
    done = source_and_run('parse_options "$@"; check_options', *options)
    assert done.returncode == 1
    assert message in done.stdout


def test_root_defaults_to_powering_off_and_the_chosen_endpoint() -> None:
    done = source_and_run(
        'parse_options "$@"; check_options; echo "[$opt_on_exit] [$opt_endpoint] [$run_uid]"', "--user", "nobody"
    )
    assert done.stdout.strip() == f"[shutdown -h now] [http://169.254.169.254] [{NOBODY}]"
    done = source_and_run(
        'parse_options "$@"; check_options; echo "[$opt_on_exit] [$opt_endpoint]"',
        *("--user", "nobody", "--source", "gce", "--on-exit", ""),
    )
    assert done.stdout.strip() == "[] [http://metadata.google.internal]"


def test_percent_decode_and_utf8_check() -> None:
    done = source_and_run('percent_decode "$1"; printf "%s" "$decoded"', "a%5Cn%25%0A%C3%A9b")
    assert done.stdout == "a\\n%\néb"
    for good in ("plain", "é", "😀", "\u0800", "\uffff"):
        assert source_and_run('is_utf8 "$1"', good).returncode == 0, good
    for bad in (b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"):
        done = source_and_run('is_utf8 "$(<"$1")"', user_data=bad)
        assert done.returncode == 1, bad


def test_a_nul_byte_in_the_user_data_is_refused_not_dropped() -> None:
    done = source_and_run('load_user_data_file "$1"', user_data=f"{MARK}&A=x\0y".encode())
    assert done.returncode == 1
    assert done.stdout.strip() == "updraft-vm-bootstrap: step parse failed: the user data holds a NUL byte"


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("", "the manifest lists glidein_startup.sh 0 times; expected once"),
        (f"{'a' * 64}  glidein_startup.sh  file\n{'b' * 64}  glidein_startup.sh  file\n", "2 times"),
        (f"{'a' * 64}  glidein_startup.sh  validate-entry\n", "is not '<sha256>  glidein_startup.sh  file'"),
        (f"{'A' * 64}  glidein_startup.sh  file\n", "is not '<sha256>  glidein_startup.sh  file'"),
        (f"{'a' * 64}  glidein_startup.sh  file extra\n", "is not '<sha256>  glidein_startup.sh  file'"),
    ],
)
def test_manifest_line_for_the_glidein_must_be_one_file_line(manifest: str, message: str) -> None:
    snippet = 'plan_glidein=glidein_startup.sh; glidein_digest_in_manifest "$1"'
    done = source_and_run(snippet, user_data=manifest.encode())
    assert done.returncode == 1
    assert message in done.stdout and "step verify failed" in done.stdout


def test_manifest_line_found_among_others_without_a_final_newline() -> None:
    manifest = f"# header\n\n{'c' * 64}  other.sh  file\n  {'d' * 64}  glidein_startup.sh  file"
    done = source_and_run(
        'plan_glidein=glidein_startup.sh; glidein_digest_in_manifest "$1"; echo "$glidein_sha256"',
        user_data=manifest.encode(),
    )
    assert done.stdout.strip() == "d" * 64, done.stdout


def test_make_plan_splits_like_python() -> None:
    text = public_part(("http://h/e/manifest", "e" * 64)) + userdata.secret_part(TOKEN)
    plan = userdata.boot_plan(userdata.parse(text))
    snippet = """
parse_user_data "$(<"$1")"; make_plan
printf '%s\\0' "$plan_manifest_url" "$plan_manifest_sha256" "$plan_glidein" "$plan_token" >"$1.out"
printf '%s\\0' "${plan_args[@]}" >"$1.args"
for ((i = 0; i < ${#plan_env_names[@]}; i++)); do
    printf '%s=%s\\0' "${plan_env_names[i]}" "${plan_env_values[i]}"
done >"$1.env"
"""
    fd, name = _tempfile(text.encode())
    os.close(fd)
    try:
        done = source_and_run(snippet.replace('"$1"', f'"{name}"').replace("$1.", f"{name}."))
        assert done.returncode == 0, done.stdout
        fields = Path(f"{name}.out").read_text().split("\0")[:-1]
        assert fields == [plan.manifest_url, plan.manifest_sha256, plan.glidein, TOKEN]
        assert Path(f"{name}.args").read_text().split("\0")[:-1] == list(plan.arguments)
        env = [tuple(item.split("=", 1)) for item in Path(f"{name}.env").read_text().split("\0")[:-1]]
        assert env == list(plan.environment)
    finally:
        for suffix in ("", ".out", ".args", ".env"):
            Path(name + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize(
    "extra",
    [
        "&UPDRAFT_VM_MANIFEST_URL=x",
        "&UPDRAFT_PILOT_TOKEN_VALUE=a&UPDRAFT_PILOT_TOKEN_VALUE=b",
    ],
)
def test_make_plan_refuses_what_python_refuses(extra: str) -> None:
    text = public_part(("http://h/e/manifest", "e" * 64)) + extra
    with pytest.raises(UserDataError) as err:
        userdata.boot_plan(userdata.parse(text))
    done = source_and_run('parse_user_data "$(<"$1")"; make_plan', user_data=text.encode())
    assert done.stdout.strip() == f"updraft-vm-bootstrap: step parse failed: {err.value}"


# --- the bash parser is Python's parser ------------------------------------------------------

NAMES = st.from_regex(userdata.NAME_RULE, fullmatch=True).filter(lambda n: len(n) < 20)
VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=30)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=6))
def test_bash_decodes_what_python_encodes(pairs: list[tuple[str, str]]) -> None:
    expected = [(userdata.USER_DATA, "1"), *pairs]
    assert bash_parse(userdata.encode(expected)) == expected


# Texts near the format, to find where the two parsers would part.
NEAR_ALPHABET = [*"UPDRAFT_USER_DATA=1", *"&&==%%%", *"0aFfGz9+.~- \n\t", *"C3ED8", "\x01", "é"]
NEAR = st.text(alphabet=st.sampled_from(NEAR_ALPHABET))
NEAR_TEXTS = st.one_of(
    NEAR,
    NEAR.map(lambda t: f"{MARK}&{t}"),
    st.lists(NEAR, max_size=4).map(lambda ts: "&".join([MARK, *ts])),
)


@settings(max_examples=150, deadline=None)
@given(NEAR_TEXTS)
def test_bash_and_python_agree_on_any_text(text: str) -> None:
    assert bash_parse(text) == python_parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        f"{MARK}\n",
        f"{MARK}&A=%c3%a9&A=%C3%A9&B=",
        f"{MARK}&A=%ED%A0%80",
        f"{MARK}&A=%F4%90%80%80",
        f"{MARK}&A=%E0%80%80",
        f"{MARK}&A=%00",
        f"{MARK}&{'Q-' * 30}=1",
        f"{MARK}&\x01\x02=1",
        "#!/bin/bash\necho a=b",
    ],
)
def test_bash_and_python_agree_on_edge_cases(text: str) -> None:
    assert bash_parse(text) == python_parse(text)


# --- whole runs: user data from a file ----------------------------------------------------------


def test_boot_from_a_file_runs_the_glidein_with_every_pair(tmp_path: Path, staging: Staging) -> None:
    manifest = staging.publish()
    env = [("UPDRAFT_FACTORY", "fac"), ("GLIDEIN_Site", "Site A&B; ünï"), ("REPEATED", "first"), ("REPEATED", "last")]
    args = ["--collector", "vo.example:9618", "two words", "a\nb", ""]
    text = public_part(manifest, env, args) + userdata.secret_part(TOKEN)
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)))
    assert run.rc == 0, run.stdout + run.stderr
    assert run.read("cwd").strip() == str(run.work)
    assert run.read("uid").strip() == str(NOBODY)
    assert run.args == args
    seen = run.env
    assert seen["UPDRAFT_FACTORY"] == "fac" and seen["GLIDEIN_Site"] == "Site A&B; ünï"
    assert seen["REPEATED"] == "last"
    assert seen["UPDRAFT_PILOT_TOKEN"] == "pilot.token"
    assert seen["HOME"] == str(run.work) and seen["USER"] == "nobody"
    assert not any(name.startswith(("UPDRAFT_VM_", "UPDRAFT_USER_DATA", "UPDRAFT_PILOT_TOKEN_")) for name in seen)
    assert TOKEN not in "".join(seen.values())
    # The token: a 0600 file of the pilot user's, its name in the sandbox.
    assert run.read("token-stat").split() == ["600", str(NOBODY)]
    assert run.read("token-seen") == TOKEN + "\n"
    assert (run.work.stat().st_mode & 0o777, run.work.stat().st_uid) == (0o700, NOBODY)
    assert run.read("umask").strip() == "0022"
    # Never the token nor the raw user data in the output.
    assert TOKEN not in run.stdout + run.stderr
    assert text not in run.stdout and "Site%20A" not in run.stdout
    assert "verified" in run.stdout and manifest[1] in run.stdout
    # The metadata service blocked for the pilot's uid; --on-exit ran.
    rule = f"OUTPUT -d 169.254.169.254 -m owner --uid-owner {NOBODY} -j REJECT"
    assert (run.fakes / "iptables.calls").read_text().splitlines() == [f"-C {rule}", f"-A {rule}"]
    assert run.on_exit_ran
    # The caller's file stays; the bootstrap made no copy of its own.
    assert (tmp_path / "user-data").exists()
    assert ".user-data" not in run.read("listing").split()


def test_the_glidein_status_is_the_exit_status_and_on_exit_runs(tmp_path: Path, staging: Staging) -> None:
    text = public_part(staging.publish(), [("FAKE_EXIT", "3")], [])
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)))
    assert run.rc == 3
    assert run.on_exit_ran
    assert "glidein_startup.sh exited with status 3" in run.stdout
    # Without a token: no token file, no UPDRAFT_PILOT_TOKEN.
    assert "UPDRAFT_PILOT_TOKEN" not in run.env and not (run.work / "pilot.token").exists()


def test_root_without_on_exit_powers_off(tmp_path: Path, staging: Staging) -> None:
    text = public_part(staging.publish())
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)), on_exit=False)
    assert run.rc == 0, run.stdout
    assert (run.fakes / "shutdown.calls").read_text() == "-h now\n"


def test_user_data_may_not_name_the_token_file(tmp_path: Path, staging: Staging) -> None:
    # Only the bootstrap says where the token is; a pair of that name is dropped, said so.
    # (updraft.userdata.public_part refuses to write one; the bootstrap does not trust that.)
    text = public_part(staging.publish(), [], []) + "&UPDRAFT_PILOT_TOKEN=..%2F..%2Fetc%2Fshadow"
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)))
    assert run.rc == 0, run.stdout
    assert "UPDRAFT_PILOT_TOKEN" not in run.env
    assert "UPDRAFT_PILOT_TOKEN in the user data ignored" in run.stdout


def test_no_metadata_block_leaves_iptables_alone(tmp_path: Path, staging: Staging) -> None:
    text = public_part(staging.publish())
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)), "--no-metadata-block")
    assert run.rc == 0, run.stdout
    assert not (run.fakes / "iptables.calls").exists()


def test_wrong_manifest_digest_fails_verify(tmp_path: Path, staging: Staging) -> None:
    url, _sha = staging.publish()
    text = public_part((url, "0" * 64)) + userdata.secret_part(TOKEN)
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)))
    assert_failed(run, "verify", "SHA-256 mismatch for the manifest", "expected " + "0" * 64)
    assert not (run.work / "args").exists()


def test_tampered_glidein_fails_verify(tmp_path: Path, staging: Staging) -> None:
    manifest = staging.publish(glidein=b"#!/bin/sh\necho evil\n", listed=FAKE_GLIDEIN.encode())
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, public_part(manifest))))
    assert_failed(run, "verify", "SHA-256 mismatch for the glidein")
    assert not (run.work / "args").exists()


def test_missing_manifest_fails_fetch(tmp_path: Path, staging: Staging) -> None:
    text = public_part((f"{staging.url}/nowhere/manifest", "0" * 64))
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)))
    assert_failed(run, "fetch", f"cannot fetch the manifest from {staging.url}/nowhere/manifest")


def test_bad_user_data_fails_parse_without_showing_it(tmp_path: Path) -> None:
    text = f"{MARK}&UPDRAFT_PILOT_TOKEN_VALUE={TOKEN}+"
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, text)))
    assert_failed(run, "parse", "pair 2 (UPDRAFT_PILOT_TOKEN_VALUE): the value is not percent-encoded")
    run = run_bootstrap(tmp_path, "--user-data", str(write_user_data(tmp_path, "#cloud-config\n")))
    assert_failed(run, "parse", "pair 1 has no '='")


# --- whole runs: the metadata services ---------------------------------------------------------


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    """A fake IMDSv2 (token by PUT, then GET with it) and GCE metadata server, answering as they do."""

    server: _MetadataServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path))
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._answer(200, IMDS_SESSION)
        else:
            self._answer(400)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        items = self.server.items
        if self.path == "/latest/user-data":
            ok = self.headers.get("X-aws-ec2-metadata-token") == IMDS_SESSION
            self._answer(200, items["ec2"]) if ok else self._answer(401)
            return
        prefix = "/computeMetadata/v1/instance/attributes/"
        if self.path.startswith(prefix) and self.headers.get("Metadata-Flavor") == "Google":
            name = self.path.removeprefix(prefix)
            self._answer(200, items[name]) if name in items else self._answer(404)
            return
        self._answer(403)


class _MetadataServer(http.server.ThreadingHTTPServer):
    requests: list[tuple[str, str]]
    items: dict[str, str]


@contextmanager
def metadata_server(items: dict[str, str]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    server = _MetadataServer(("127.0.0.1", 0), _MetadataHandler)
    server.requests, server.items = [], items
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()


def test_ec2_imdsv2_user_data_boots_the_glidein(tmp_path: Path, staging: Staging) -> None:
    text = public_part(staging.publish()) + userdata.secret_part(TOKEN)
    with metadata_server({"ec2": text}) as (endpoint, requests):
        run = run_bootstrap(tmp_path, "--source", "ec2", "--metadata-endpoint", endpoint)
    assert run.rc == 0, run.stdout + run.stderr
    assert requests == [("PUT", "/latest/api/token"), ("GET", "/latest/user-data")]
    assert run.read("token-seen") == TOKEN + "\n"
    assert run.args == ["--collector", "vo.example:9618", "two words", "a\nb", ""]
    # Its copy of the user data is gone before the glidein starts.
    assert ".user-data" not in run.read("listing").split()
    assert TOKEN not in run.stdout + run.stderr and IMDS_SESSION not in run.stdout + run.stderr


def test_keep_user_data_keeps_a_private_copy(tmp_path: Path, staging: Staging) -> None:
    text = public_part(staging.publish()) + userdata.secret_part(TOKEN)
    with metadata_server({"ec2": text}) as (endpoint, _requests):
        run = run_bootstrap(tmp_path, "--metadata-endpoint", endpoint, "--keep-user-data")
    assert run.rc == 0, run.stdout
    copy = run.work / ".user-data"
    assert copy.read_text() == text
    assert (copy.stat().st_mode & 0o777, copy.stat().st_uid) == (0o600, 0)


def test_gce_items_join_into_the_same_boot(tmp_path: Path, staging: Staging) -> None:
    text = public_part(staging.publish())
    items = {"updraft-user-data": text, "updraft-pilot-token": TOKEN + "\n"}
    with metadata_server(items) as (endpoint, requests):
        run = run_bootstrap(tmp_path, "--source", "gce", "--metadata-endpoint", endpoint)
    assert run.rc == 0, run.stdout + run.stderr
    prefix = "/computeMetadata/v1/instance/attributes/"
    assert requests == [("GET", prefix + "updraft-user-data"), ("GET", prefix + "updraft-pilot-token")]
    assert run.read("token-seen") == TOKEN + "\n"
    assert run.env["GLIDEIN_Site"] == "Site A&B; ünï"


def test_gce_without_a_token_item_boots_without_a_token(tmp_path: Path, staging: Staging) -> None:
    with metadata_server({"updraft-user-data": public_part(staging.publish())}) as (endpoint, _requests):
        run = run_bootstrap(tmp_path, "--source", "gce", "--metadata-endpoint", endpoint)
    assert run.rc == 0, run.stdout
    assert "UPDRAFT_PILOT_TOKEN" not in run.env
    assert "no metadata item updraft-pilot-token" in run.stdout


def test_ec2_refusal_fails_read(tmp_path: Path) -> None:
    with metadata_server({}) as (endpoint, _requests):
        run = run_bootstrap(tmp_path, "--metadata-endpoint", endpoint + "/nothing-here")
    assert_failed(run, "read", "no IMDSv2 session token", "HTTP 400")


def test_a_silent_metadata_service_is_given_up_on_in_time(tmp_path: Path) -> None:
    # It accepts connections (the kernel completes the handshake) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        run = run_bootstrap(tmp_path, "--metadata-endpoint", endpoint, "--metadata-timeout", "3", timeout=60)
    assert_failed(run, "read", "no IMDSv2 session token")
    assert 3 <= run.seconds < 15, run.seconds


def test_a_closed_metadata_port_is_given_up_on_in_time(tmp_path: Path) -> None:
    # A closed port: refused connections are retried, then given up on within the deadline.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    run = run_bootstrap(tmp_path, "--metadata-endpoint", f"http://127.0.0.1:{port}", "--metadata-timeout", "2")
    assert_failed(run, "read")
    assert run.seconds < 15, run.seconds


def test_links_left_in_the_sandbox_are_not_written_through(tmp_path: Path, staging: Staging) -> None:
    # An earlier boot's payload (the pilot user) owns the sandbox; root must not write through its links.
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    work = tmp_path / "work"
    work.mkdir()
    for name in ("glidein_startup.sh", "vm-manifest", "pilot.token", ".user-data"):
        (work / name).symlink_to(victim)
    text = public_part(staging.publish()) + userdata.secret_part(TOKEN)
    with metadata_server({"ec2": text}) as (endpoint, _requests):
        run = run_bootstrap(tmp_path, "--metadata-endpoint", endpoint)
    assert run.rc == 0, run.stdout + run.stderr
    assert victim.read_text() == "untouched"
    assert run.read("token-seen") == TOKEN + "\n"

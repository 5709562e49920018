"""The `updraft` command line as a user meets it: options at any level, one error style, honest exits.

Cycles run on the in-memory daemons (`updraft.fakes`) by replacing each
service's `connect`; one test reaches a real closed port through the real
HTCondor client.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from updraft import protocol
from updraft.cli import main
from updraft.factory import downtime
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.factory.credentials import keyring_path
from updraft.factory.ports import fake_ports as factory_fake_ports
from updraft.fakes import FakeSchedd
from updraft.frontend.config import FrontendConfig
from updraft.frontend.ports import fake_ports as frontend_fake_ports

from .conftest import ConfigTree

PREFIX = "updraft: error:"
FACTORY = """\
    name: test-factory
    wms_collector: {collector}
    schedd: factory@lab
    work_dir: {work}
    query_timeout_seconds: 2
    pilot:
      executable: /bin/true
    entries:
      site1:
        grid_type: condor
        resource: "ce@site1.lab 127.0.0.1:29620"
        attributes:
          GLIDEIN_Site: Site1
        frontends:
          vo:
            identity: frontend@lab
            require_credential: false
      site2:
        grid_type: condor
        resource: "ce@site2.lab 127.0.0.1:29621"
"""
FRONTEND = """\
    name: test-vo
    vo_collector: 127.0.0.1:29618
    wms_collector: 127.0.0.1:29619
    work_dir: {work}
    schedds: [vo-schedd@lab]
    factories:
      test-factory:
        identity: factory@lab
    groups:
      main:
        job_constraint: "JobUniverse == 5"
        match_expr: "true"
"""


def updraft(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="updraft")


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(PREFIX)]


def assert_one_error_style(result: Result, exit_code: int) -> None:
    """Exit code as given, the last stderr line our error, no click `Error:` and no traceback."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith(f"{PREFIX} "), lines
    assert len(error_lines(result)) == 1, lines
    assert not any(line.startswith("Error:") for line in lines), lines
    assert "Traceback" not in result.stderr + result.stdout


def free_port() -> int:
    """A port nothing listens on (bound, read, closed: the kernel does not hand it out again at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """Each test starts at the default level; the CLI's stderr handler is left where it is."""
    yield
    logging.getLogger().setLevel(logging.WARNING)


@pytest.fixture
def factory_config(tree: ConfigTree, tmp_path: Path) -> Path:
    return tree.factory(main=FACTORY.format(collector="127.0.0.1:29619", work=tmp_path / "fwork"))


@pytest.fixture
def frontend_config(tree: ConfigTree, tmp_path: Path) -> Path:
    return tree.frontend(main=FRONTEND.format(work=tmp_path / "vwork"))


def use_factory_fakes(monkeypatch: pytest.MonkeyPatch, **unreachable: bool) -> dict[str, Any]:
    """Every cycle the CLI runs goes to fresh fakes; the last ones built are returned in the dict."""
    built: dict[str, Any] = {}

    def connect(config: FactoryConfig) -> Any:
        ports, built["wms"], built["schedd"] = factory_fake_ports(config, time.time(), **unreachable)
        return ports

    monkeypatch.setattr("updraft.factory.service.connect", connect)
    return built


def use_frontend_fakes(
    monkeypatch: pytest.MonkeyPatch,
    *,
    entries: bool = True,
    schedd_unreachable: bool = False,
    idle_jobs: int = 3,
    **unreachable: bool,
) -> None:
    def connect(config: FrontendConfig) -> Any:
        ports, vo, wms = frontend_fake_ports(config, **unreachable)
        jobs = [
            {"ClusterId": 1, "ProcId": n, "JobStatus": 1, "JobUniverse": 5, "RequestCpus": 1,
             "RequestMemory": 1024, "EnteredCurrentStatus": int(time.time()) - 600}
            for n in range(idle_jobs)
        ]  # fmt: skip
        vo.schedds["vo-schedd@lab"] = FakeSchedd("vo-schedd@lab", jobs=jobs, unreachable=schedd_unreachable)
        if entries:
            wms.ads.append(entry_ad())
        return ports

    for module in ("updraft.frontend.service", "updraft.frontend.ports"):
        monkeypatch.setattr(f"{module}.connect", connect)


def entry_ad() -> dict[str, Any]:
    return {
        "MyType": protocol.ENTRY_TYPE,
        "Name": protocol.entry_ad_name("site1", "test-factory"),
        "UpdraftSchema": protocol.SCHEMA,
        protocol.IDENTITY: "factory@lab",
        protocol.E_FACTORY: "test-factory",
        protocol.E_ENTRY: "site1",
        protocol.E_CPUS: 1,
        protocol.E_MAX_PILOTS: 100,
        protocol.E_MAX_IDLE: 10,
        "GLIDEIN_Site": "Site1",
    }


# ------------------------------------------------------------------ global options at any level


@pytest.mark.parametrize(
    "place",
    [
        lambda c: ["-v", "factory", "once", "-c", c],
        lambda c: ["factory", "-v", "once", "-c", c],
        lambda c: ["factory", "once", "-c", c, "-v"],
        lambda c: ["factory", "-c", c, "once", "-v"],
    ],
)
def test_verbose_is_accepted_at_every_level_and_shows_the_log(
    place: Callable[[str], list[str]], factory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_factory_fakes(monkeypatch, collector_unreachable=True)
    result = updraft(*place(str(factory_config)))
    assert result.exit_code == 1, result.stderr
    assert logging.getLogger().level == logging.INFO
    assert "ERROR updraft.factory.observe: pilot queue unreadable this cycle" in result.stderr


def test_verbose_counts_add_up_across_levels(factory_config: Path) -> None:
    result = updraft("-v", "factory", "check-config", "-v", "-c", factory_config)
    assert result.exit_code == 0, result.stderr
    assert logging.getLogger().level == logging.DEBUG


def test_a_config_given_on_the_group_is_used_and_one_given_on_the_command_wins(
    factory_config: Path, tmp_path: Path
) -> None:
    on_group = updraft("factory", "-c", factory_config, "check-config")
    assert on_group.exit_code == 0, on_group.stderr
    assert on_group.stdout.splitlines()[0] == f"read {factory_config}"
    missing = tmp_path / "missing.yaml"
    both = updraft("factory", "-c", factory_config, "check-config", "-c", missing)
    assert_one_error_style(both, 1)
    assert str(missing) in both.stderr


def test_a_lab_dir_given_on_the_group_reaches_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDRAFT_LAB_DIR", raising=False)
    empty = tmp_path / "no-lab-here"
    empty.mkdir()
    result = updraft("lab", "--dir", empty, "status")
    assert_one_error_style(result, 1)
    assert error_lines(result) == [f"{PREFIX} no lab in {empty}: run `updraft lab up` first"]


@pytest.mark.parametrize("group", [None, "factory", "frontend", "lab"])
def test_help_lists_the_commands_and_the_global_option(group: str | None) -> None:
    root = main
    command = root if group is None else root.commands[group]
    assert isinstance(command, click.Group)
    result = updraft(*([group] if group else []), "--help")
    assert result.exit_code == 0, result.stderr
    for name in command.commands:
        assert f"  {name}" in result.stdout
    assert "-v, --verbose" in result.stdout


# ------------------------------------------------------------------ one error style


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_reports_a_bad_config_or_lab_path_in_the_one_error_style(tmp_path: Path) -> None:
    """Every command, found by walking the tree: one error line, exit 1 (missing config) or 2 (a file as lab dir)."""
    missing, a_file = tmp_path / "no-such.yaml", tmp_path / "a-file"
    a_file.write_text("")
    walked = 0
    for path, command in leaf_commands(main):
        names = {param.name for param in command.params}
        assert names & {"config_path", "lab_dir"}, f"{' '.join(path)} takes no config path: extend this test"
        args: list[str] = [*path]
        for param in command.params:
            if param.required and isinstance(param, click.Argument):
                args.append("x")
            elif param.required and isinstance(param, click.Option):
                args += [param.opts[0], "x"]
        if path[-1] == "explain":
            args.append("--unmatched")
        if "config_path" in names:
            result = updraft(*args, "-c", missing)
            assert_one_error_style(result, 1)
            assert error_lines(result) == [f"{PREFIX} {missing}: config file not found"], path
        else:
            result = updraft(*args, "--dir", a_file)
            assert_one_error_style(result, 2)
            assert "--dir" in error_lines(result)[0], path
        walked += 1
    assert walked >= 20


@pytest.mark.parametrize("args", [["--nope"], ["factory", "--nope"], ["frontend", "once", "--nope"], ["nope"]])
def test_usage_errors_exit_2_with_the_usage_line_and_the_prefix(args: list[str]) -> None:
    result = updraft(*args)
    assert_one_error_style(result, 2)
    assert result.stderr.startswith("Usage: updraft")


def test_a_secret_in_an_error_is_masked(tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    result = updraft("factory", "check-config", "-c", tmp_path / f"{jwt}.yaml")
    assert_one_error_style(result, 1)
    assert jwt not in result.stderr and "[redacted]" in result.stderr


def test_a_click_exception_of_a_command_is_shown_in_our_style(
    frontend_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_frontend_fakes(monkeypatch)
    result = updraft("frontend", "explain", "--entry", "nowhere", "-c", frontend_config)
    assert_one_error_style(result, 1)
    assert "'nowhere'" in result.stderr and "site1@test-factory" in result.stderr


# ------------------------------------------------------------------ once: each problem once, one error line


def test_factory_once_on_an_unreachable_pool_prints_each_problem_once(
    factory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_factory_fakes(monkeypatch, collector_unreachable=True, schedd_unreachable=True)
    result = updraft("factory", "once", "-c", factory_config)
    assert_one_error_style(result, 1)
    lines = result.stderr.splitlines()
    assert len(lines) == len(set(lines)), lines
    assert lines[-1].startswith(f"{PREFIX} the pilot queue could not be read: ")
    reason = lines[-1].removeprefix(f"{PREFIX} the pilot queue could not be read: ")
    assert all(reason not in line for line in lines[:-1]), lines
    assert all(line.startswith("problem: ") for line in lines[:-1]), lines
    assert result.stdout == ""  # no "submitted 0" for a cycle that could not know


def test_frontend_once_on_an_unreachable_pool_prints_each_problem_once(
    frontend_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_frontend_fakes(monkeypatch, vo_unreachable=True, wms_unreachable=True)
    result = updraft("frontend", "once", "-c", frontend_config)
    assert_one_error_style(result, 1)
    lines = result.stderr.splitlines()
    assert len(lines) == len(set(lines)), lines
    failure = lines[-1].removeprefix(f"{PREFIX} ")
    assert all(failure not in line for line in lines[:-1]), lines


def test_once_against_a_closed_port_prints_each_problem_once(tree: ConfigTree, tmp_path: Path) -> None:
    """The real HTCondor client against a port nothing listens on."""
    main_file = tree.factory(main=FACTORY.format(collector=f"127.0.0.1:{free_port()}", work=tmp_path / "fwork"))
    started = time.monotonic()
    result = updraft("factory", "once", "-c", main_file)
    assert time.monotonic() - started < 15
    assert_one_error_style(result, 1)
    lines = result.stderr.splitlines()
    assert len(lines) == len(set(lines)), lines
    assert "the pilot queue could not be read" in lines[-1]
    assert not keyring_path(load_factory_config(main_file).config).exists()


def test_factory_plan_prints_what_it_could_not_read(factory_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_factory_fakes(monkeypatch, collector_unreachable=True)
    result = updraft("factory", "plan", "-c", factory_config)
    assert_one_error_style(result, 1)
    assert "the pilot queue could not be read" in result.stderr


def test_frontend_plan_without_a_collector_publishes_no_guess(
    frontend_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_frontend_fakes(monkeypatch, wms_unreachable=True)
    result = updraft("frontend", "plan", "-c", frontend_config)
    assert_one_error_style(result, 1)
    assert result.stdout == ""


# ------------------------------------------------------------------ explain --unmatched: only what was read


@pytest.mark.parametrize(
    ("fakes", "named"),
    [
        ({"vo_unreachable": True, "wms_unreachable": True}, "collector 127.0.0.1:29618"),
        ({"wms_unreachable": True}, "collector 127.0.0.1:29619"),
        ({"schedd_unreachable": True}, "schedd vo-schedd@lab"),
        ({"entries": False}, "no entry of a trusted factory (test-factory)"),
        ({"entries": False, "idle_jobs": 0}, "no entry of a trusted factory (test-factory)"),
    ],
)
def test_explain_unmatched_says_what_it_could_not_read_and_exits_1(
    fakes: dict[str, Any], named: str, frontend_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_frontend_fakes(monkeypatch, **fakes)
    result = updraft("frontend", "explain", "--unmatched", "-c", frontend_config)
    assert_one_error_style(result, 1)
    assert "every idle job matches" not in result.stdout
    assert error_lines(result)[0].startswith(f"{PREFIX} cannot tell which idle jobs match: ")
    assert named in error_lines(result)[0]


def test_explain_unmatched_says_every_job_matches_only_when_it_read_everything(
    frontend_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_frontend_fakes(monkeypatch)
    result = updraft("frontend", "explain", "--unmatched", "-c", frontend_config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "every idle job matches at least one live entry\n"


def test_explain_unmatched_with_no_idle_job_says_so(frontend_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_frontend_fakes(monkeypatch, idle_jobs=0)
    result = updraft("frontend", "explain", "--unmatched", "-c", frontend_config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "no idle jobs\n"


# ------------------------------------------------------------------ a key only in a cycle that reached its daemons


def test_factory_once_makes_no_keyring_when_its_pool_is_unreachable(
    factory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_factory_fakes(monkeypatch, collector_unreachable=True)
    assert updraft("factory", "once", "-c", factory_config).exit_code == 1
    assert not keyring_path(load_factory_config(factory_config).config).exists()


def test_factory_once_makes_the_keyring_and_advertises_it_when_the_pool_answers(
    factory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = use_factory_fakes(monkeypatch)
    result = updraft("factory", "once", "-c", factory_config)
    assert result.exit_code == 0, result.stderr
    assert keyring_path(load_factory_config(factory_config).config).is_file()
    [factory_ad] = [ad for ad in built["wms"].ads if ad["MyType"] == protocol.FACTORY_TYPE]
    assert protocol.F_PUBLIC_KEY in factory_ad


def test_an_existing_key_is_not_rotated_while_the_pool_is_unreachable(
    factory_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_factory_fakes(monkeypatch)
    assert updraft("factory", "once", "-c", factory_config).exit_code == 0
    ring = keyring_path(load_factory_config(factory_config).config)
    before = ring.read_bytes()
    due = time.time() + 10 * 365 * 86400  # far past any rotation period
    monkeypatch.setattr("time.time", lambda: due)
    use_factory_fakes(monkeypatch, collector_unreachable=True)
    assert updraft("factory", "once", "-c", factory_config).exit_code == 1
    assert ring.read_bytes() == before
    use_factory_fakes(monkeypatch)
    assert updraft("factory", "once", "-c", factory_config).exit_code == 0
    assert ring.read_bytes() != before  # rotated in the first cycle that reached the pool


# ------------------------------------------------------------------ names given on the command line


@pytest.mark.parametrize("command", ["up", "down"])
def test_an_unknown_entry_is_a_usage_error_listing_the_known_ones(command: str, factory_config: Path) -> None:
    result = updraft("factory", command, "--entry", "NOSUCH", "-c", factory_config)
    assert_one_error_style(result, 2)
    assert "'NOSUCH'" in result.stderr and "all, site1, site2" in result.stderr


@pytest.mark.parametrize("command", ["up", "down"])
def test_an_unknown_frontend_is_a_usage_error_listing_the_known_ones(command: str, factory_config: Path) -> None:
    result = updraft("factory", command, "--entry", "site1", "--frontend", "nope", "-c", factory_config)
    assert_one_error_style(result, 2)
    assert "'nope'" in result.stderr and "(known: vo)" in result.stderr
    allowed = updraft("factory", command, "--entry", "site1", "--frontend", "vo", "-c", factory_config)
    assert allowed.exit_code == 0, allowed.stderr


def test_up_still_ends_the_downtime_of_an_entry_since_removed(factory_config: Path) -> None:
    config = load_factory_config(factory_config).config
    path = downtime.downtimes_path(config.work_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    downtime.save(path, [downtime.Downtime("retired", time.time() - 60, None, None, "gone")])
    result = updraft("factory", "up", "--entry", "retired", "-c", factory_config)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "retired: 1 downtime(s) ended\n"


def test_an_unknown_group_is_a_usage_error(frontend_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_frontend_fakes(monkeypatch)
    result = updraft("frontend", "explain", "--unmatched", "--group", "nosuch", "-c", frontend_config)
    assert_one_error_style(result, 2)
    assert "'nosuch'" in result.stderr and "(known: main)" in result.stderr

"""`updraft factory|frontend check-config`, invoked through the root command."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from updraft.errors import UpdraftError
from updraft.factory.cli import factory
from updraft.frontend.cli import frontend

HOOK = "https://hooks.slack.example/services/T000/B000/XXXX"


def _root() -> click.Group:
    """The real `updraft` root if it imports, else a stand-in with the same error handling."""
    try:
        return importlib.import_module("updraft.cli").main
    except ImportError:
        pass

    class Root(click.Group):
        def invoke(self, ctx: click.Context):
            try:
                return super().invoke(ctx)
            except UpdraftError as err:
                click.echo(f"updraft: error: {err}", err=True)
                ctx.exit(1)

    root = Root("updraft", commands=[factory, frontend])
    return root


@pytest.fixture
def updraft():
    root = _root()

    def run(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(root, list(args), env=env, prog_name="updraft")

    return run


def test_factory_check_config_prints_files_and_summary(updraft, tree):
    main = tree.factory(("10-site2.yaml", "entries: {site2: {enabled: false, grid_type: condor, resource: r}}"))
    result = updraft("factory", "check-config", "-c", str(main))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"read {main}",
        f"read {main.parent / 'factory.d' / '10-site2.yaml'}",
        "factory test-factory: 2 entries (1 enabled), WMS collector 127.0.0.1:29619, schedd factory@lab",
        "monitoring: json",
        "notifiers: none (entry health changes are not announced)",
    ]
    assert result.stderr == ""


def test_factory_check_config_lists_the_notifiers_with_their_secret_files_never_the_secrets(updraft, tree):
    secrets = tree.root / "secrets"
    secrets.mkdir()
    for name, content in (("smtp.user", "ops"), ("smtp.password", "hunter2-pw"), ("chat.url", HOOK)):
        (secrets / name).write_text(content)
    notifiers = f"""\
        monitoring:
          notifiers:
            ops-mail: {{type: email, host: smtp.example.org, from: f@example.org, to: [t@example.org],
                        username_file: {secrets}/smtp.user, password_file: {secrets}/smtp.password,
                        ca_file: {secrets}/smtp.user}}
            relay: {{type: email, host: localhost, port: 25, security: none, from: f@example.org, to: [t@example.org]}}
            chat: {{type: slack, url_file: {secrets}/chat.url}}
            team: {{type: mattermost, url_file: {secrets}/chat.url, channel: ops}}
        """
    main = tree.factory(("40-notify.yaml", notifiers))
    result = updraft("factory", "check-config", "-c", str(main))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-4:] == [
        f"notifier ops-mail: email, username_file {secrets}/smtp.user, password_file {secrets}/smtp.password",
        "notifier relay: email",
        f"notifier chat: slack, url_file {secrets}/chat.url",
        f"notifier team: mattermost, url_file {secrets}/chat.url",
    ]
    assert "hunter2-pw" not in result.output and HOOK not in result.output and "T000" not in result.output


def test_frontend_check_config_warns_about_an_index_the_expression_does_not_imply(updraft, tree):
    main = tree.frontend()
    drop_in = main.parent / "frontend.d"
    drop_in.mkdir(exist_ok=True)
    (drop_in / "50-index.yaml").write_text(
        "groups:\n  main:\n"
        "    match_expr: 'stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites) || TARGET.Opportunistic'\n"
        "    match_index: {job_attr: DESIRED_Sites, entry_attr: GLIDEIN_Site}\n"
    )
    result = updraft("frontend", "check-config", "--config", str(main))
    assert result.exit_code == 0, result.output
    assert "warning: groups.main.match_index is not used: match_expr has no top-level term" in result.stderr
    assert "group main: no index, jobs' Requirements read" in result.stdout


def test_frontend_check_config_prints_files_and_summary(updraft, tree):
    main = tree.frontend()
    result = updraft("frontend", "check-config", "--config", str(main))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"read {main}",
        "frontend test-vo: 1 group (1 enabled), 1 factory, VO collector 127.0.0.1:29618, WMS collector 127.0.0.1:29619",
        "monitoring: json",
        "group main: no index, jobs' Requirements read",
    ]


@pytest.mark.parametrize(
    ("component", "variable"), [("factory", "UPDRAFT_FACTORY_CONFIG"), ("frontend", "UPDRAFT_FRONTEND_CONFIG")]
)
def test_config_path_comes_from_the_environment(updraft, tree, component, variable):
    main = getattr(tree, component)()
    result = updraft(component, "check-config", env={variable: str(main)})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"read {main}"


def test_warnings_go_to_stderr_once_each(updraft, tree):
    main = tree.factory(("20-site1.yaml", "entries: {site1: {limits: {max_idle: 20}}}"))
    result = updraft("factory", "check-config", "-c", str(main))
    assert result.exit_code == 0, result.output
    warning = (
        f"warning: entries.site1.limits.max_idle: {main} sets 10, "
        f"{main.parent / 'factory.d' / '20-site1.yaml'} sets 20; using 20 (later file wins)"
    )
    assert result.stderr.splitlines() == [warning]
    assert "warning:" not in result.stdout


def test_bad_config_exits_1_naming_file_and_key(updraft, tree):
    main = tree.frontend(("20-group.yaml", "groups: {extra: {match_expr: 'TARGET.x >'}}"))
    result = updraft("frontend", "check-config", "-c", str(main))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("updraft: error: invalid configuration (1 problem):\n")
    assert (
        f"{main.parent / 'frontend.d' / '20-group.yaml'}: groups.extra.match_expr: "
        "not a valid ClassAd expression (got 'TARGET.x >')"
    ) in result.stderr


def test_warnings_are_shown_even_when_validation_fails(updraft, tree):
    main = tree.factory(("20-site1.yaml", "entries: {site1: {limits: {max_idle: many}}}"))
    result = updraft("factory", "check-config", "-c", str(main))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("warning: entries.site1.limits.max_idle: ")
    assert lines[1] == "updraft: error: invalid configuration (1 problem):"


def test_missing_config_file_exits_1_naming_it(updraft, tmp_path):
    missing = tmp_path / "factory.yaml"
    result = updraft("factory", "check-config", "-c", str(missing))
    assert result.exit_code == 1
    assert result.stderr == f"updraft: error: {missing}: config file not found\n"


@pytest.mark.parametrize("component", ["factory", "frontend"])
def test_unknown_option_is_a_usage_error(updraft, component):
    result = updraft(component, "check-config", "--bogus")
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert "--bogus" in result.stderr


@pytest.mark.parametrize(
    ("component", "variable", "default"),
    [
        ("factory", "UPDRAFT_FACTORY_CONFIG", "/etc/updraft/factory.yaml"),
        ("frontend", "UPDRAFT_FRONTEND_CONFIG", "/etc/updraft/frontend.yaml"),
    ],
)
def test_help_shows_env_var_and_default(updraft, component, variable, default):
    result = updraft(component, "check-config", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())  # help text wraps
    assert "-c, --config FILE" in text
    assert variable in text
    assert default in text
    assert "Validate the" in text


@pytest.mark.parametrize("component", ["factory", "frontend"])
def test_group_help_lists_check_config(updraft, component):
    result = updraft(component, "--help")
    assert result.exit_code == 0
    assert "check-config" in result.stdout


def test_check_config_says_how_pilot_tokens_are_minted_or_why_they_cannot_be(tmp_path) -> None:
    from itertools import cycle

    from click.testing import CliRunner

    from updraft.cli import main
    from updraft.tokens import SCRAMBLE

    key = tmp_path / "POOL"
    config = tmp_path / "frontend.yaml"
    config.write_text(
        "name: vo1\nvo_collector: 127.0.0.1:9618\nwms_collector: 127.0.0.1:9619\nidentity: frontend@lab\n"
        "factories: {fac1: {identity: factory@lab}}\ngroups: {main: {}}\n"
        f"pilot_tokens: {{signing_key_file: {key}, trust_domain: lab, identity: pilot@lab}}\n"
    )
    missing = CliRunner().invoke(main, ["frontend", "check-config", "-c", str(config)])
    assert missing.exit_code == 1
    assert f"{config}: pilot_tokens.signing_key_file: {key}: no such file" in missing.output
    key.write_bytes(bytes(b ^ s for b, s in zip(b"pool password", cycle(SCRAMBLE))))
    done = CliRunner().invoke(main, ["frontend", "check-config", "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert "pilot tokens: pilot@lab issued by lab with key POOL" in done.output


def test_a_frontend_with_notifiers_is_refused_naming_the_file_and_the_key(updraft, tree):
    """Only the factory changes entry health: a frontend's notifiers would never send, so they are refused."""
    drop_in = "monitoring: {notifiers: {chat: {type: slack, url_file: /etc/updraft/slack.url}}}"
    main = tree.frontend(("30-notify.yaml", drop_in))
    result = updraft("frontend", "check-config", "-c", str(main))
    assert result.exit_code == 1
    assert (
        f"{main.parent / 'frontend.d' / '30-notify.yaml'}: monitoring.notifiers: notifiers belong in the "
        "factory's configuration (its monitoring.notifiers): only the factory changes entry health"
    ) in result.stderr
    empty = tree.frontend(("30-notify.yaml", "monitoring: {notifiers: {}}"))
    assert updraft("frontend", "check-config", "-c", str(empty)).exit_code == 0

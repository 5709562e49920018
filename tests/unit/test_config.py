"""Layered config loading: merge, provenance, YAML strictness, validation messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pydantic
import pytest

from updraft.config import dotted, is_classad_expr, load_layered
from updraft.errors import ConfigError
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.frontend.config import FrontendConfig, Group, load_frontend_config

REPO = Path(__file__).resolve().parents[2]


def factory_error(main: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    return str(caught.value)


def frontend_error(main: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_frontend_config(main)
    return str(caught.value)


# --------------------------------------------------------------------------
# Files and merging
# --------------------------------------------------------------------------


def test_drop_ins_are_read_after_the_main_file_in_name_order(tree):
    main = tree.factory(
        ("20-site1-limits.yaml", "entries: {site1: {limits: {max_idle: 30}}}"),
        ("10-site2.yaml", "entries: {site2: {grid_type: arc, resource: arc.site2.lab}}"),
    )
    loaded = load_factory_config(main)
    drop = main.parent / "factory.d"
    assert loaded.files == (main, drop / "10-site2.yaml", drop / "20-site1-limits.yaml")
    entries = loaded.config.entries
    assert sorted(entries) == ["site1", "site2"]  # keyed merge: site2 added, site1 kept
    assert entries["site1"].limits.max_idle == 30  # changed by the drop-in
    assert entries["site1"].limits.max_pilots == 100  # untouched sibling key survives
    assert entries["site1"].attributes == {"GLIDEIN_Site": "Site1"}
    assert entries["site2"].grid_resource == "arc arc.site2.lab"


def test_later_drop_in_wins_over_earlier_drop_in(tree):
    main = tree.factory(
        ("10-a.yaml", "cycle_seconds: 10"),
        ("20-b.yaml", "cycle_seconds: 20"),
    )
    assert load_factory_config(main).config.cycle_seconds == 20


def test_missing_drop_in_directory_is_fine(tree):
    main = tree.factory()
    loaded = load_factory_config(main)
    assert loaded.files == (main,)
    assert loaded.warnings == ()
    assert loaded.config.name == "test-factory"


def test_only_visible_yaml_drop_ins_are_read_and_every_other_name_is_flagged(tree):
    main = tree.factory(
        ("30-typo.yml", "cycle_seconds: 7"),
        ("40-notes.txt", "not yaml: ["),
        (".50-hidden.yaml", "cycle_seconds: 9"),
        ("60-real.yaml", "cycle_seconds: 11"),
    )
    loaded = load_factory_config(main, on_warning=lambda _: None)
    assert loaded.files == (main, main.parent / "factory.d" / "60-real.yaml")
    assert loaded.config.cycle_seconds == 11
    drop = main.parent / "factory.d"
    assert loaded.warnings == (
        f"{drop / '.50-hidden.yaml'}: ignored, a hidden file (only visible *.yaml files are read)",
        f"{drop / '30-typo.yml'}: ignored, only *.yaml files are read (rename it to 30-typo.yaml to use it)",
        f"{drop / '40-notes.txt'}: ignored, only *.yaml files are read",
    )


def test_lists_are_replaced_not_concatenated(tree):
    main = tree.frontend(("10-schedds.yaml", "schedds: [other@lab]"))
    loaded = load_frontend_config(main, on_warning=lambda _: None)
    assert loaded.config.schedds == ("other@lab",)


def test_conflicting_value_warns_naming_both_files_and_values_and_later_wins(tree, caplog):
    drop_in = ("20-site1.yaml", "entries: {site1: {limits: {max_idle: 20}}}")
    main = tree.factory(drop_in)
    with caplog.at_level(logging.WARNING, logger="updraft.config"):
        loaded = load_factory_config(main)
    later = main.parent / "factory.d" / "20-site1.yaml"
    expected = f"entries.site1.limits.max_idle: {main} sets 10, {later} sets 20; using 20 (later file wins)"
    assert loaded.warnings == (expected,)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("updraft.config", logging.WARNING, expected)
    ]
    assert loaded.config.entries["site1"].limits.max_idle == 20


def test_same_value_in_two_files_does_not_warn(tree, caplog):
    main = tree.factory(("20-same.yaml", "entries: {site1: {limits: {max_idle: 10}}}"))
    with caplog.at_level(logging.WARNING, logger="updraft.config"):
        loaded = load_factory_config(main)
    assert loaded.warnings == ()
    assert caplog.records == []


@pytest.mark.parametrize(
    ("earlier", "later"),
    [("1", "1.0"), ("true", "1"), ("'10'", "10")],
    ids=["int-vs-float", "bool-vs-int", "str-vs-int"],
)
def test_equal_looking_values_of_different_types_still_warn(tree, earlier, later):
    main = tree.factory(
        ("10-a.yaml", f"entries: {{site1: {{attributes: {{X: {earlier}}}}}}}"),
        ("20-b.yaml", f"entries: {{site1: {{attributes: {{X: {later}}}}}}}"),
    )
    warnings: list[str] = []
    load_factory_config(main, on_warning=warnings.append)
    assert len(warnings) == 1
    assert warnings[0].startswith("entries.site1.attributes.X: ")


def test_warning_callback_replaces_logging(tree, caplog):
    main = tree.factory(
        ("20-site1.yaml", "cycle_seconds: 5"), main="name: f\nwms_collector: h:1\nschedd: s\ncycle_seconds: 60\n"
    )
    seen: list[str] = []
    with caplog.at_level(logging.WARNING, logger="updraft.config"):
        loaded = load_factory_config(main, on_warning=seen.append)
    assert seen == list(loaded.warnings)
    assert len(seen) == 1
    assert "sets 60" in seen[0]
    assert "sets 5" in seen[0]
    assert caplog.records == []


def test_yaml_aliases_do_not_make_one_override_change_two_entries(tree):
    main = tree.factory(
        ("20-site1.yaml", "entries: {site1: {limits: {max_idle: 1}}}"),
        main="""\
            name: f
            wms_collector: h:1
            schedd: s
            entries:
              site1: &site {grid_type: condor, resource: r, limits: {max_idle: 5}}
              site2: *site
        """,
    )
    entries = load_factory_config(main, on_warning=lambda _: None).config.entries
    assert (entries["site1"].limits.max_idle, entries["site2"].limits.max_idle) == (1, 5)


def test_mapping_replaced_by_scalar_warns_and_fails_validation_in_the_later_file(tree):
    main = tree.factory(("20-bad.yaml", "entries: {site1: {limits: 5}}"))
    warnings: list[str] = []
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main, on_warning=warnings.append)
    assert len(warnings) == 1
    assert warnings[0].startswith("entries.site1.limits: ")
    assert f"{main.parent / 'factory.d' / '20-bad.yaml'}: entries.site1.limits: " in str(caught.value)


# --------------------------------------------------------------------------
# Reading YAML
# --------------------------------------------------------------------------


def test_duplicate_key_in_one_file_is_an_error_with_file_line_and_key(tree):
    main = tree.factory(
        main="""\
        name: f
        wms_collector: h:1
        schedd: s
        cycle_seconds: 10
        cycle_seconds: 20
    """
    )
    message = factory_error(main)
    assert message.startswith(f"{main}:5:1: ")
    assert "duplicate key 'cycle_seconds' (first set on line 4)" in message


def test_duplicate_key_nested_in_a_drop_in(tree):
    main = tree.factory(("10-dup.yaml", "entries:\n  site1:\n    enabled: true\n    enabled: false\n"))
    message = factory_error(main)
    assert message.startswith(f"{main.parent / 'factory.d' / '10-dup.yaml'}:4:5: ")
    assert "duplicate key 'enabled'" in message


def test_yaml_merge_keys_are_not_duplicates(tree):
    main = tree.factory(
        main="""\
        name: f
        wms_collector: h:1
        schedd: s
        defaults: &defaults {grid_type: condor, resource: r}
        entries:
          site1:
            <<: *defaults
            resource: other
    """
    )
    # `defaults` itself is an unknown key, but the merge key must not be taken for a duplicate
    message = factory_error(main)
    assert "duplicate" not in message
    assert f"{main}: defaults: unknown key" in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: f\n  schedd: s\n", ":2:9: "),
        ("name: [f\nschedd: s\n", ":2:7: "),
        ("name: 'f\n", ":2:1: "),
        ("name: f\n\tschedd: s\n", ":2:1: "),
    ],
    ids=["bad-indent", "unclosed-list", "unclosed-quote", "tab"],
)
def test_yaml_syntax_error_names_file_line_and_column(tree, text, where):
    main = tree.write("etc/factory.yaml", text)
    message = factory_error(main)
    assert message.startswith(f"{main}{where}invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")],
)
def test_top_level_must_be_a_mapping(tree, text, kind):
    main = tree.factory(("10-bad.yaml", text))
    message = factory_error(main)
    assert message == (
        f"{main.parent / 'factory.d' / '10-bad.yaml'}: the top level must be a mapping of keys to values, not a {kind}"
    )


def test_empty_drop_in_counts_as_empty_mapping(tree):
    main = tree.factory(("10-empty.yaml", ""), ("20-comment.yaml", "# nothing yet\n"))
    loaded = load_factory_config(main)
    assert len(loaded.files) == 3
    assert loaded.config.cycle_seconds == 60


def test_empty_main_file_reports_missing_required_keys_in_the_main_file(tree):
    main = tree.write("etc/factory.yaml", "")
    message = factory_error(main)
    assert message.startswith("invalid configuration (3 problems):\n")
    for key in ("name", "wms_collector", "schedd"):
        assert f"  {main}: {key}: required key is missing" in message


def test_missing_main_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "factory.yaml"
    assert factory_error(missing) == f"{missing}: config file not found"


def test_drop_in_path_that_is_not_a_directory(tree):
    main = tree.factory()
    tree.write("etc/factory.d", "oops")
    assert factory_error(main) == f"{main.parent / 'factory.d'}: expected a directory of *.yaml drop-in files"


def test_yes_and_no_are_text_not_booleans(tree):
    main = tree.factory(("10-attrs.yaml", "entries: {site1: {attributes: {GLIDEIN_Country: NO, Y: yes, T: true}}}"))
    attributes = load_factory_config(main).config.entries["site1"].attributes
    assert (attributes["GLIDEIN_Country"], attributes["Y"], attributes["T"]) == ("NO", "yes", True)


# --------------------------------------------------------------------------
# Validation messages
# --------------------------------------------------------------------------


def test_unknown_key_names_file_key_path_and_allowed_keys(tree):
    main = tree.frontend(("10-typo.yaml", "groups: {main: {match_exprr: 'true'}}"))
    message = frontend_error(main)
    drop_in = main.parent / "frontend.d" / "10-typo.yaml"
    allowed = ", ".join(Group.model_fields)
    assert allowed.startswith("enabled, job_constraint, match_expr, ")
    assert f"  {drop_in}: groups.main.match_exprr: unknown key (allowed: {allowed})" in message


def test_unknown_top_level_key(tree):
    main = tree.factory(("10-typo.yaml", "cycle_second: 5"))
    message = factory_error(main)
    assert f"{main.parent / 'factory.d' / '10-typo.yaml'}: cycle_second: unknown key (allowed: name, " in message


def test_wrong_type_deep_in_a_drop_in_names_that_file_and_full_key_path(tree):
    main = tree.factory(("20-site1.yaml", "entries: {site1: {limits: {max_idle: many}}}"))
    message = factory_error(main)
    assert (
        f"  {main.parent / 'factory.d' / '20-site1.yaml'}: entries.site1.limits.max_idle: "
        "Input should be a valid integer (got 'many')"
    ) in message
    assert f"{main}: entries" not in message  # the main file set 10; it is not to blame


def test_every_problem_is_listed_in_one_error(tree):
    main = tree.factory(
        (
            "10-bad.yaml",
            """\
        cycle_seconds: 0
        entries:
          site1: {grid_type: condr}
          site2: {enabled: false}
    """,
        )
    )
    message = factory_error(main)
    assert message.startswith("invalid configuration (4 problems):\n")
    assert len(message.splitlines()) == 5
    assert "entries.site1.grid_type: Input should be 'condor', 'arc', 'batch', 'ec2' or 'gce' (got 'condr')" in message
    assert "cycle_seconds: Input should be greater than or equal to 1 (got 0)" in message
    assert "entries.site2.grid_type: required key is missing" in message
    assert "entries.site2.resource: required key is missing" in message


def test_missing_required_key_blames_every_file_that_defined_the_mapping(tree):
    main = tree.factory(
        ("10-site2.yaml", "entries: {site2: {grid_type: condor}}"),
        ("20-site2.yaml", "entries: {site2: {enabled: false}}"),
    )
    drop = main.parent / "factory.d"
    message = factory_error(main)
    assert (
        f"  {drop / '10-site2.yaml'}, {drop / '20-site2.yaml'}: entries.site2.resource: required key is missing"
    ) in message


def test_long_values_are_truncated(tree):
    main = tree.factory(("10-long.yaml", f"cycle_seconds: {'x' * 200}"))
    line = next(line for line in factory_error(main).splitlines() if "cycle_seconds" in line)
    got = line.split("(got ", 1)[1]
    assert got.endswith("...)")
    assert len(got) <= 61


FACTORY_BAD_VALUES = [
    ("name: 'bad name'", "name", "expected letters, digits, '_', '.' or '-'", "'bad name'"),
    ("name: -lead", "name", "starting with a letter or digit", "'-lead'"),
    ("wms_collector: localhost", "wms_collector", "expected host:port", "'localhost'"),
    ("wms_collector: 'host:0'", "wms_collector", "port from 1 to 65535", "'host:0'"),
    ("wms_collector: 'host:65536'", "wms_collector", "port from 1 to 65535", "'host:65536'"),
    ("wms_collector: 'host:port'", "wms_collector", "expected host:port", "'host:port'"),
    ("wms_collector: 9618", "wms_collector", "Input should be a valid string", "9618"),
    ("schedd: ''", "schedd", "not empty or only spaces", "''"),
    ("work_dir: relative/dir", "work_dir", "expected an absolute path", "'relative/dir'"),
    ("cycle_seconds: '60'", "cycle_seconds", "Input should be a valid integer", "'60'"),
    ("cycle_seconds: true", "cycle_seconds", "Input should be a valid integer", "True"),
    ("entries: {site1: {enabled: yes}}", "entries.site1.enabled", "valid boolean", "'yes'"),
    ("entries: {site1: {limits: {max_held: -1}}}", "entries.site1.limits.max_held", "greater than or equal to 0", "-1"),
    ("entries: {site1: {resource: ''}}", "entries.site1.resource", "not empty or only spaces", "''"),
    (
        "entries: {site1: {attributes: {When: 2024-01-01}}}",
        "entries.site1.attributes.When",
        "expected a string, number or true/false",
        "datetime.date(2024, 1, 1)",
    ),
    (
        "entries: {site1: {attributes: {Sites: [a, b]}}}",
        "entries.site1.attributes.Sites",
        "expected a string, number or true/false",
        "['a', 'b']",
    ),
    (
        "entries: {site1: {attributes: {bad-attr: 1}}}",
        "entries.site1.attributes.bad-attr",
        "invalid key: expected a ClassAd attribute name",
        "'bad-attr'",
    ),
    (
        "entries: {'bad entry': {grid_type: condor, resource: r}}",
        'entries."bad entry"',
        "invalid key: expected letters, digits",
        "'bad entry'",
    ),
    ("entries: {site1: {grid_type: condr}}", "entries.site1.grid_type", "Input should be 'condor'", "'condr'"),
    ("entries: [site1]", "entries", "expected a mapping of keys to values", "['site1']"),
]


@pytest.mark.parametrize(
    ("yaml_text", "key_path", "expected", "got"),
    FACTORY_BAD_VALUES,
    ids=[row[1] + "=" + row[3] for row in FACTORY_BAD_VALUES],
)
def test_factory_bad_value_names_file_key_expectation_and_value(tree, yaml_text, key_path, expected, got):
    main = tree.factory(("50-bad.yaml", yaml_text))
    message = factory_error(main)
    line = next((ln for ln in message.splitlines() if f": {key_path}: " in ln), None)
    assert line is not None, message
    assert line.startswith(f"  {main.parent / 'factory.d' / '50-bad.yaml'}: {key_path}: ")
    assert expected in line
    assert line.endswith(f"(got {got})")


FRONTEND_BAD_VALUES = [
    (
        "groups: {main: {match_expr: 'TARGET.x >'}}",
        "groups.main.match_expr",
        "not a valid ClassAd expression",
        "'TARGET.x >'",
    ),
    (
        "groups: {main: {job_constraint: 'true; Owner = \"x\"'}}",
        "groups.main.job_constraint",
        "not a valid ClassAd expression",
        "'true; Owner = \"x\"'",
    ),
    ("groups: {main: {job_constraint: ''}}", "groups.main.job_constraint", "not a valid ClassAd expression", "''"),
    (
        "groups: {main: {match_expr: true}}",
        "groups.main.match_expr",
        'expected a ClassAd expression as a quoted string, e.g. "true"',
        "True",
    ),
    ("groups: {main: {limits: {max_idle_pilots: 1.5}}}", "groups.main.limits.max_idle_pilots", "valid integer", "1.5"),
    ("vo_collector: '[::1]:99999'", "vo_collector", "port from 1 to 65535", "'[::1]:99999'"),
    (
        "factories: {test-factory: {identity: updraft}}",
        "factories.test-factory.identity",
        "expected an identity like user@domain",
        "'updraft'",
    ),
    ("schedds: vo-schedd@lab", "schedds", "expected a list", "'vo-schedd@lab'"),
    ("schedds: [ok@lab, 7]", "schedds[1]", "valid string", "7"),
]


@pytest.mark.parametrize(
    ("yaml_text", "key_path", "expected", "got"),
    FRONTEND_BAD_VALUES,
    ids=[row[1] + "=" + row[3] for row in FRONTEND_BAD_VALUES],
)
def test_frontend_bad_value_names_file_key_expectation_and_value(tree, yaml_text, key_path, expected, got):
    main = tree.frontend(("50-bad.yaml", yaml_text))
    message = frontend_error(main)
    line = next((ln for ln in message.splitlines() if f": {key_path}: " in ln), None)
    assert line is not None, message
    assert line.startswith(f"  {main.parent / 'frontend.d' / '50-bad.yaml'}: {key_path}: ")
    assert expected in line
    assert line.endswith(f"(got {got})")


@pytest.mark.parametrize("key", ["factories", "groups"])
def test_frontend_needs_at_least_one_factory_and_group(tree, key):
    sections = {"factories": "{f: {identity: u@d}}", "groups": "{g: {}}", key: "{}"}
    main = tree.frontend(
        main="name: v\nvo_collector: a:1\nwms_collector: b:2\n"
        + "".join(f"{name}: {value}\n" for name, value in sections.items())
    )
    message = frontend_error(main)
    assert message == (
        "invalid configuration (1 problem):\n"
        f"  {main}: {key}: Dictionary should have at least 1 item after validation, not 0 (got {{}})"
    )


def test_empty_mapping_in_a_drop_in_removes_nothing(tree):
    main = tree.frontend(("50-empty.yaml", "groups: {}"))
    assert list(load_frontend_config(main).config.groups) == ["main"]


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1:9618", "cm.example.org:9618", "localhost:1", "[::1]:65535", "host-1.lab:29619"],
)
def test_good_host_port_values(tree, value):
    main = tree.factory(("50-collector.yaml", f"wms_collector: '{value}'"))
    assert load_factory_config(main, on_warning=lambda _: None).config.wms_collector == value


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("true", True),
        ("JobUniverse == 5", True),
        ('stringListMember("vo", TARGET.GLIDEIN_Supported_VOs)', True),
        ("RequestCpus <= TARGET.GLIDEIN_CPUS && (x || y)", True),
        ("TARGET.x >", False),
        ("", False),
        ("   ", False),
        ("true; Owner = 1", False),
        ("true ] [ x = 1", False),
        ("1 ]", False),
        ("x) ; y = (z", False),
        ("a\0b", False),
    ],
)
def test_is_classad_expr(text, valid):
    assert is_classad_expr(text) is valid


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("entries", "site1", "limits", "max_idle"), "entries.site1.limits.max_idle"),
        (("entries", "ce.site1", "resource"), 'entries."ce.site1".resource'),
        (("schedds", 2), "schedds[2]"),
        ((), ""),
    ],
)
def test_dotted(path, text):
    assert dotted(path) == text


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Access_Token", "DB_PASSWORD", "ClientSecret", "SSH_Key"])
def test_secret_like_values_are_redacted_in_warnings(tree, name):
    main = tree.factory(
        ("10-a.yaml", f"entries: {{site1: {{attributes: {{{name}: hunter2}}}}}}"),
        ("20-b.yaml", f"entries: {{site1: {{attributes: {{{name}: swordfish}}}}}}"),
    )
    warnings: list[str] = []
    load_factory_config(main, on_warning=warnings.append)
    assert len(warnings) == 1
    assert "hunter2" not in warnings[0]
    assert "swordfish" not in warnings[0]
    assert "sets <redacted>" in warnings[0]
    assert "using <redacted>" in warnings[0]


def test_secret_like_values_are_redacted_in_errors(tree):
    main = tree.factory(
        (
            "10-bad.yaml",
            """\
        entries: {site1: {attributes: {My_Token: [hunter2]}}}
        cycle_seconds: {password: swordfish, user: bob}
    """,
        )
    )
    message = factory_error(main)
    assert "hunter2" not in message
    assert "swordfish" not in message
    assert "entries.site1.attributes.My_Token: expected a string, number or true/false" in message
    assert "(got [<redacted>])" in message
    assert "(got {'password': <redacted>, 'user': 'bob'})" in message  # only the secret part is hidden


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def test_models_are_deeply_immutable(tree):
    config = load_frontend_config(tree.frontend()).config
    with pytest.raises(pydantic.ValidationError):
        config.name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        config.groups["main"].limits.max_idle_pilots = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.groups["other"] = config.groups["main"]
    with pytest.raises(AttributeError):
        config.schedds.append("x")  # type: ignore[attr-defined]
    assert config.name == "test-vo"
    assert set(config.groups) == {"main"}


def test_defaults_and_serialisation(tree):
    main = tree.factory(main="name: f\nwms_collector: h:1\nschedd: s\nentries: {e: {grid_type: arc, resource: r}}\n")
    config = load_factory_config(main).config
    assert config.work_dir == Path("/var/lib/updraft/factory")
    assert config.cycle_seconds == 60
    entry = config.entries["e"]
    assert (entry.enabled, dict(entry.attributes)) == (True, {})
    assert (entry.limits.max_pilots, entry.limits.max_idle, entry.limits.max_held) == (100, 20, 10)
    dumped = config.model_dump(mode="json")
    assert dumped["entries"]["e"]["limits"] == {
        "max_pilots": 100,
        "max_idle": 20,
        "max_held": 10,
        "per_frontend": {"max_pilots": None, "max_idle": None, "max_held": None},
    }


def test_frontend_defaults(tree):
    main = tree.frontend(
        main="""\
        name: v
        vo_collector: a:1
        wms_collector: b:2
        factories: {f: {identity: u@d}}
        groups: {g: {}}
    """
    )
    config = load_frontend_config(main).config
    group = config.groups["g"]
    assert (config.schedds, config.cycle_seconds) == ((), 60)
    assert (group.enabled, group.job_constraint, group.match_expr) == (True, "true", "true")
    assert (group.limits.max_idle_pilots, group.limits.max_running_pilots) == (50, 500)


def test_load_layered_accepts_any_model(tree):
    main = tree.write("svc.yaml", "name: x\nwms_collector: h:1\nschedd: s\n")
    tree.write("svc.d/10.yaml", "cycle_seconds: 3\n")
    loaded = load_layered(str(main), FactoryConfig)
    assert loaded.files == (main, tree.root / "svc.d" / "10.yaml")
    assert loaded.config.cycle_seconds == 3


@pytest.mark.parametrize(
    ("main", "model", "loader"),
    [("factory.yaml", FactoryConfig, load_factory_config), ("frontend.yaml", FrontendConfig, load_frontend_config)],
)
def test_shipped_examples_validate(main, model, loader):
    loaded = loader(REPO / "etc" / main)
    assert isinstance(loaded.config, model)
    assert len(loaded.files) == 2  # the main file and its example drop-in
    assert loaded.warnings == ()


def test_shipped_factory_example_matches_the_lab():
    config = load_factory_config(REPO / "etc" / "factory.yaml").config
    assert (config.name, config.wms_collector, config.schedd) == ("lab-factory", "127.0.0.1:29619", "factory@lab")
    assert {name: e.resource for name, e in config.entries.items()} == {
        "site1": "ce@site1.lab 127.0.0.1:29620",
        "site2": "ce@site2.lab 127.0.0.1:29621",
    }


def test_shipped_frontend_example_matches_the_lab():
    config = load_frontend_config(REPO / "etc" / "frontend.yaml").config
    assert (config.vo_collector, config.wms_collector) == ("127.0.0.1:29618", "127.0.0.1:29619")
    assert config.factories["lab-factory"].identity == "factory@lab"
    assert list(config.groups) == ["main"]

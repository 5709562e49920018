"""Every config value is bounded and typed: finite numbers, upper bounds, bounded names, non-blank text."""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel

from updraft.config import (
    MAX_COUNT,
    MAX_INTERVAL_SECONDS,
    MAX_LIFETIME_SECONDS,
    MAX_NAME_LENGTH,
    MAX_TIMEOUT_SECONDS,
)
from updraft.errors import ConfigError
from updraft.factory import gridtypes
from updraft.factory.config import FactoryConfig, load_factory_config
from updraft.frontend.config import FrontendConfig, load_frontend_config
from updraft.monitoring import registry

REPO = Path(__file__).resolve().parents[2]


def factory_problem(tree, yaml_text: str, key_path: str) -> str:
    """The one line of the error about `key_path`, which must name the drop-in."""
    main = tree.factory(("50-bad.yaml", yaml_text))
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    return _line_for(str(caught.value), main.parent / "factory.d" / "50-bad.yaml", key_path)


def frontend_problem(tree, yaml_text: str, key_path: str) -> str:
    main = tree.frontend(("50-bad.yaml", yaml_text))
    with pytest.raises(ConfigError) as caught:
        load_frontend_config(main)
    return _line_for(str(caught.value), main.parent / "frontend.d" / "50-bad.yaml", key_path)


def _line_for(message: str, file: Path, key_path: str) -> str:
    line = next((ln for ln in message.splitlines() if f": {key_path}: " in ln), None)
    assert line is not None, message
    assert line.startswith(f"  {file}: {key_path}: "), line
    return line


# --------------------------------------------------------------------------
# Numbers: finite, and under an upper bound
# --------------------------------------------------------------------------

FACTORY_NUMBERS = [
    ("cycle_seconds: 1.0e+20", "cycle_seconds", "valid integer"),
    (f"cycle_seconds: {MAX_INTERVAL_SECONDS + 1}", "cycle_seconds", f"less than or equal to {MAX_INTERVAL_SECONDS}"),
    ("query_timeout_seconds: .inf", "query_timeout_seconds", "finite number"),
    ("query_timeout_seconds: .nan", "query_timeout_seconds", "finite number"),
    ("query_timeout_seconds: 1.0e+20", "query_timeout_seconds", "less than or equal to 86400"),
    ("monitoring: {deadline_seconds: .inf}", "monitoring.deadline_seconds", "finite number"),
    (f"entries: {{site1: {{limits: {{max_pilots: {10**30}}}}}}}", "entries.site1.limits.max_pilots", "less than"),
    (
        f"entries: {{site1: {{limits: {{max_idle: {MAX_COUNT + 1}}}}}}}",
        "entries.site1.limits.max_idle",
        f"less than or equal to {MAX_COUNT}",
    ),
    (
        f"entries: {{site1: {{max_walltime_seconds: {MAX_LIFETIME_SECONDS + 1}}}}}",
        "entries.site1.max_walltime_seconds",
        f"less than or equal to {MAX_LIFETIME_SECONDS}",
    ),
    ("entries: {site1: {stale: {idle_seconds: 1000000000000}}}", "entries.site1.stale.idle_seconds", "less than"),
    ("entries: {site1: {glidein: {max_idle_seconds: 99999999999}}}", "entries.site1.glidein.max_idle_seconds", "less"),
    ("entries: {site1: {submit: {cluster_size: 1000000}}}", "entries.site1.submit.cluster_size", "less than"),
    ("entries: {site1: {memory_mb: 1000000000000}}", "entries.site1.memory_mb", "less than"),
    (
        "entries: {site1: {holds: {recoverable_codes: [0, 99999999999]}}}",
        "entries.site1.holds.recoverable_codes[1]",
        "less",
    ),
    ("credentials: {owner_uid: 4294967295}", "credentials.owner_uid", "less than"),
    ("pilot_log_retention_seconds: 99999999999", "pilot_log_retention_seconds", "less than"),
    ("entries: {site1: {attributes: {Big: 100000000000000000000}}}", "entries.site1.attributes.Big", "64 bits"),
    ("entries: {site1: {attributes: {Inf: .inf}}}", "entries.site1.attributes.Inf", "finite number"),
    ("entries: {site1: {attributes: {NaN: .nan}}}", "entries.site1.attributes.NaN", "finite number"),
    (
        "monitoring: {writers: {rrd: {timeout_seconds: .inf}}}",
        "monitoring.writers",
        "rrd.timeout_seconds: Input should be a finite number",
    ),
]


@pytest.mark.parametrize(("yaml_text", "key_path", "expected"), FACTORY_NUMBERS, ids=[r[0] for r in FACTORY_NUMBERS])
def test_factory_numbers_out_of_bounds_are_refused_at_their_key(tree, yaml_text, key_path, expected):
    assert expected in factory_problem(tree, yaml_text, key_path)


FRONTEND_NUMBERS = [
    ("cycle_seconds: 1.0e+20", "cycle_seconds", "valid integer"),
    ("limits: {max_idle_pilots: 1000000000000000000000000000000}", "limits.max_idle_pilots", "less than"),
    ("pool: {max_running_pilots: 1000001}", "pool.max_running_pilots", "less than"),
    ("groups: {main: {ramp_up_attenuation: .inf}}", "groups.main.ramp_up_attenuation", "finite number"),
    ("groups: {main: {ramp_up_attenuation: 1000.0}}", "groups.main.ramp_up_attenuation", "less than"),
    ("groups: {main: {curb_fraction: .nan}}", "groups.main.curb_fraction", "finite number"),
    (
        "groups: {main: {removal: {max_fraction_per_cycle: .nan}}}",
        "groups.main.removal.max_fraction_per_cycle",
        "finite",
    ),
    ("groups: {main: {old_idle_seconds: 99999999999}}", "groups.main.old_idle_seconds", "less than"),
    ("groups: {main: {limits: {max_idle_per_entry: 1.0e+30}}}", "groups.main.limits.max_idle_per_entry", "integer"),
]


@pytest.mark.parametrize(("yaml_text", "key_path", "expected"), FRONTEND_NUMBERS, ids=[r[0] for r in FRONTEND_NUMBERS])
def test_frontend_numbers_out_of_bounds_are_refused_at_their_key(tree, yaml_text, key_path, expected):
    assert expected in frontend_problem(tree, yaml_text, key_path)


def test_the_largest_allowed_values_load(tree):
    """The bounds are inclusive: a bound that refused its own value would be a lie in the docs."""
    main = tree.factory(
        (
            "50-max.yaml",
            f"""\
            cycle_seconds: {MAX_INTERVAL_SECONDS}
            query_timeout_seconds: {MAX_TIMEOUT_SECONDS}
            entries:
              site1:
                max_walltime_seconds: {MAX_LIFETIME_SECONDS}
                limits: {{max_pilots: {MAX_COUNT}, max_idle: {MAX_COUNT}, max_held: {MAX_COUNT}}}
            """,
        )
    )
    config = load_factory_config(main).config
    assert config.cycle_seconds == MAX_INTERVAL_SECONDS
    assert config.entries["site1"].limits.max_pilots == MAX_COUNT


def _models_in(annotation: object, seen: set[type]) -> list[type[BaseModel]]:
    """Every model class reachable from a field annotation."""
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in seen:
            seen.add(annotation)
            found.append(annotation)
            for info in annotation.model_fields.values():
                found.extend(_models_in(info.annotation, seen))
        return found
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg, seen))
    return found


def _numbers_without_a_bound(model: type[BaseModel]) -> list[str]:
    """Fields of `model` holding an int or float with no upper bound (or, for floats, allowing inf)."""
    loose = []
    for name, info in model.model_fields.items():
        kinds = _leaf_types(info.annotation)
        if not kinds & {int, float}:
            continue
        metadata = [*info.metadata, *_nested_metadata(info.annotation)]
        has_upper = any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in metadata) or any(
            getattr(m, "le", None) is not None or getattr(m, "lt", None) is not None for m in metadata
        )
        finite = float not in kinds or any(getattr(m, "allow_inf_nan", None) is False for m in metadata)
        if not (has_upper and finite):
            loose.append(f"{model.__name__}.{name}")
    return loose


def _leaf_types(annotation: object) -> set[object]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, tuple, list):
        return {t for arg in typing.get_args(annotation) for t in _leaf_types(arg)}
    return {annotation}


def _nested_metadata(annotation: object) -> list[object]:
    """The Field/annotated-types metadata of `X | None`, ``tuple[X, ...]`` and Annotated members."""
    found: list[object] = []
    if typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        found.extend(args[1:])
        for meta in args[1:]:
            found.extend(getattr(meta, "metadata", []))
        found.extend(_nested_metadata(args[0]))
    for arg in typing.get_args(annotation) if typing.get_origin(annotation) is not typing.Annotated else ():
        found.extend(_nested_metadata(arg))
    return found


def test_every_number_in_every_config_model_has_an_upper_bound_and_is_finite():
    """The sweep the issue asked for: no int or float field of any model is unbounded."""
    roots: list[object] = [FactoryConfig, FrontendConfig]
    roots += [gridtypes.plugin(name).settings for name in gridtypes.BUILTIN]
    roots += [registry.plugin(name).settings for name in registry.names()]
    seen: set[type] = set()
    models = [m for root in roots for m in _models_in(root, seen)]
    assert len(models) > 20  # the walk really went through the nested models
    assert [field for model in models for field in _numbers_without_a_bound(model)] == []


# --------------------------------------------------------------------------
# Names and text
# --------------------------------------------------------------------------


def test_a_5000_character_entry_name_is_refused(tree):
    name = "e" * 5000  # an explicit key ("? "): YAML limits implicit keys to 1024 characters
    main = tree.factory(("50-bad.yaml", f"entries:\n  ? {name}\n  : {{grid_type: condor, resource: r}}\n"))
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    message = str(caught.value)
    assert f"too long: 5000 characters, at most {MAX_NAME_LENGTH}" in message
    assert len(message) < 600  # the name itself is cut short in the message


def test_a_name_of_the_maximum_length_loads(tree):
    name = "e" * MAX_NAME_LENGTH
    main = tree.factory(("50-long.yaml", f"entries: {{{name}: {{grid_type: condor, resource: r}}}}"))
    assert name in load_factory_config(main).config.entries


@pytest.mark.parametrize("blank", ["' '", '"\\t"', '"   \\n "', "''"])
def test_a_blank_resource_is_refused(tree, blank):
    line = factory_problem(tree, f"entries: {{site1: {{resource: {blank}}}}}", "entries.site1.resource")
    assert "not empty or only spaces" in line


@pytest.mark.parametrize(
    ("yaml_text", "key_path"),
    [
        ("schedd: '  '", "schedd"),
        ("entries: {site1: {glidein: {node_launcher: ' '}}}", "entries.site1.glidein.node_launcher"),
        ("entries: {b1: {grid_type: arc, resource: r, batch_queue: ' '}}", "entries.b1.batch_queue"),
        ("monitoring: {writers: {rrd: {binary: ' '}}}", "monitoring.writers"),
    ],
)
def test_blank_text_is_refused_wherever_text_must_say_something(tree, yaml_text, key_path):
    assert "not empty or only spaces" in factory_problem(tree, yaml_text, key_path)


def test_blank_trust_domain_and_schedd_names_are_refused_in_the_frontend(tree):
    assert "not empty or only spaces" in frontend_problem(tree, "schedds: ['  ']", "schedds[0]")


def test_overlong_text_is_refused(tree):
    line = factory_problem(tree, f"entries: {{site1: {{resource: {'r' * 5000}}}}}", "entries.site1.resource")
    assert "too long: 5000 characters, at most 4096" in line


def test_an_overlong_attribute_value_is_refused(tree):
    line = factory_problem(
        tree, f"entries: {{site1: {{attributes: {{Note: {'x' * 5000}}}}}}}", "entries.site1.attributes.Note"
    )
    assert "too long" in line


# --------------------------------------------------------------------------
# The shipped configs still load
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("main", "load"), [("etc/factory.yaml", load_factory_config), ("etc/frontend.yaml", load_frontend_config)]
)
def test_the_shipped_configs_load(main, load):
    loaded = load(REPO / main)
    assert loaded.files[0] == REPO / main
    assert len(loaded.files) > 1  # their drop-ins too
    assert math.isfinite(loaded.config.query_timeout_seconds)


# --------------------------------------------------------------------------
# ClassAd expressions call only functions the library knows
# --------------------------------------------------------------------------


def test_an_unknown_classad_function_is_refused_with_key_and_name(tree):
    text = """groups: {main: {match_expr: 'stringListMembr(TARGET.GLIDEIN_Site, "a,b")'}}"""
    line = frontend_problem(tree, text, "groups.main.match_expr")
    assert "calls stringListMembr, not a ClassAd function" in line


def test_an_unknown_function_in_an_entry_start_expression_is_refused(tree):
    line = factory_problem(tree, "entries: {site1: {glidein: {start: 'isUndefind(x)'}}}", "entries.site1.glidein.start")
    assert "calls isUndefind" in line


@pytest.mark.parametrize(
    "expr",
    [
        "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
        'StringListIMember("a", "A,b") && ifThenElse(isUndefined(x), true, regexp("f(", y))',
        'userHome("x", "/") =!= undefined && splitUserName("a@b")[0] == "a"',
        '"notAFunction(" == strcat("a", "b")',
        "'odd(' == 1 /* comment( */",
    ],
)
def test_known_functions_and_parentheses_in_strings_are_accepted(expr):
    from updraft.config import unknown_functions

    assert unknown_functions(expr) == []


def test_every_listed_classad_function_is_known_to_the_installed_library():
    """The list is a shortcut for the library's answer: each name on it must really be known,
    and a misspelling must not be (the probe could otherwise accept anything)."""
    from updraft.config import _CLASSAD_FUNCTIONS, library_knows

    assert sorted(name for name in _CLASSAD_FUNCTIONS if not library_knows(name)) == []
    assert not library_knows("stringListMembr")
    assert not library_knows("noSuchFunction")


# --------------------------------------------------------------------------
# An entry set's downtime and its members'
# --------------------------------------------------------------------------

SET_WITH_MEMBERS = """\
entries:
  site2: {grid_type: condor, resource: "ce@site2.lab 127.0.0.1:29621"%s}
entry_sets:
  us: {members: [site1, site2]%s}
"""


def test_a_set_in_downtime_with_a_member_that_says_it_is_up_is_refused_naming_both_keys(tree):
    line = factory_problem(tree, SET_WITH_MEMBERS % (", downtime: false", ", downtime: true"), "entries.site2.downtime")
    assert "entry_sets.us.downtime is true" in line
    assert "entries.site1.downtime" not in line  # site1 says nothing about downtime: no conflict


@pytest.mark.parametrize(
    ("member", "set_flag"),
    [("", ", downtime: true"), (", downtime: true", ""), (", downtime: true", ", downtime: false")],
)
def test_set_and_member_downtimes_that_do_not_contradict_load(tree, member, set_flag):
    """A set down with silent members, or one member down in a set that is up (out of the rotation)."""
    main = tree.factory(("50-set.yaml", SET_WITH_MEMBERS % (member, set_flag)))
    config = load_factory_config(main).config
    assert config.entry_sets["us"].downtime == ("true" in set_flag)
    assert config.entries["site2"].downtime == ("true" in member)


@pytest.mark.parametrize(
    ("yaml_text", "key_path", "expected"),
    [
        ('entries: {site1: {attributes: {Note: "a\\0b"}}}', "entries.site1.attributes.Note", "NUL character"),
        ('entries: {site1: {resource: "ce\\0x"}}', "entries.site1.resource", "NUL character"),
        (
            f"staging: {{dir: /srv/www, url: 'http://h/{'p' * 5000}'}}",
            "staging.url",
            "at most 4096 characters",
        ),
        (
            f"entries: {{b1: {{grid_type: batch, resource: r, batch_system: slurm, ssh_host: 'u@{'h' * 5000}'}}}}",
            "entries.b1.ssh_host",
            "expected user@host",
        ),
    ],
)
def test_nul_characters_and_overlong_urls_and_hosts_are_refused(tree, yaml_text, key_path, expected):
    assert expected in factory_problem(tree, yaml_text, key_path)

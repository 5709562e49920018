"""Bad input from others: factory ads the frontend reads, config files an operator writes.

Each is either read or refused with a message naming what is wrong and
where; nothing crashes, and nothing is written anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import fuzz
from updraft import protocol
from updraft.errors import ConfigError
from updraft.factory.config import load_factory_config
from updraft.frontend.config import load_frontend_config
from updraft.frontend.credentials import parse_factory_key
from updraft.frontend.observe import parse_entry

TRUSTED = {"fac1": "factory@lab"}

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.text(alphabet="/\\.\0\n ", min_size=1, max_size=8),
    st.just("x" * 100_000),
    st.just("../../etc/passwd"),
    st.lists(st.integers(), max_size=3),
)


def good_entry_ad() -> dict:
    return {
        "MyType": protocol.ENTRY_TYPE,
        "Name": "ce1@fac1",
        "UpdraftSchema": protocol.SCHEMA,
        protocol.E_FACTORY: "fac1",
        protocol.E_ENTRY: "ce1",
        protocol.IDENTITY: "factory@lab",
        protocol.E_CPUS: 4,
        protocol.E_MAX_PILOTS: 10,
        protocol.E_MAX_IDLE: 5,
        protocol.E_DOWNTIME: False,
        "GLIDEIN_Site": "Site1",
    }


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(good_entry_ad())), junk, min_size=1, max_size=4))
def test_a_mangled_entry_ad_is_read_with_a_safe_name_or_refused_with_a_reason(changes: dict) -> None:
    ad = {**good_entry_ad(), **changes}
    entry, why = parse_entry(ad, TRUSTED)
    if entry is None:
        assert why is None or isinstance(why, str)  # None: not ours (another factory) and not our business
        assert why is None or len(why) < 600
    else:
        assert protocol.NAME.fullmatch(entry.name) and len(entry.name) <= protocol.MAX_NAME
        assert protocol.NAME.fullmatch(entry.factory) and entry.cpus_per_pilot >= 1
        assert entry.max_pilots >= 0 and entry.max_idle >= 0


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([protocol.E_FACTORY, protocol.IDENTITY, protocol.F_PUBLIC_KEY, protocol.F_KEY_ID]),
        junk,
        min_size=1,
        max_size=4,
    )
)
def test_a_mangled_factory_ad_gives_no_key_or_a_checked_one(changes: dict) -> None:
    ad = {protocol.E_FACTORY: "fac1", protocol.IDENTITY: "factory@lab", **changes}
    key, why = parse_factory_key(ad, TRUSTED)
    assert key is None  # no mangled key ever passes the key-id check
    assert why is None or len(why) < 600


def test_names_that_would_be_paths_are_refused_with_the_attribute_named() -> None:
    for bad in ("../ce1", "ce/1", "ce\n1", "", "x" * 200):
        entry, why = parse_entry({**good_entry_ad(), protocol.E_ENTRY: bad}, TRUSTED)
        assert entry is None and protocol.E_ENTRY in why


# ---------------------------------------------------------------------- config files

FACTORY = {
    "name": "fac1",
    "wms_collector": "127.0.0.1:9618",
    "schedd": "factory@lab",
    "work_dir": "/var/lib/updraft/f",
    "entries": {
        "ce1": {
            "grid_type": "condor",
            "resource": "ce@site 127.0.0.1:9620",
            "frontends": {"vo1": {"identity": "frontend@lab"}},
            "limits": {"max_idle": 3},
        }
    },
    "credentials": {"key_rotation_seconds": 3600},
}
FRONTEND = {
    "name": "vo1",
    "vo_collector": "127.0.0.1:9618",
    "wms_collector": "127.0.0.1:9619",
    "identity": "frontend@lab",
    "factories": {"fac1": {"identity": "factory@lab"}},
    "groups": {"main": {"match_expr": "true"}},
    "pilot_tokens": {
        "signing_key_file": "/etc/condor/passwords.d/POOL",
        "trust_domain": "lab",
        "identity": "pilot@lab",
    },
}


def _paths(config: dict, prefix: tuple = ()) -> list[tuple]:
    found = []
    for key, value in config.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found += _paths(value, (*prefix, key))
    return found


def _replaced(config: dict, path: tuple, value: object) -> dict:
    copy = yaml.safe_load(yaml.safe_dump(config))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_config_with_a_junk_value_loads_or_names_the_file_and_the_key(tmp_path_factory, data) -> None:
    kind, base, loader = data.draw(
        st.sampled_from([("factory", FACTORY, load_factory_config), ("frontend", FRONTEND, load_frontend_config)])
    )
    path = data.draw(st.sampled_from(_paths(base)))
    value = data.draw(junk.filter(lambda v: not (isinstance(v, float) and v != v)))
    folder = tmp_path_factory.mktemp("fuzz")
    file = folder / f"{kind}.yaml"
    file.write_text(yaml.safe_dump(_replaced(base, path, value)))
    before = sorted(os.listdir(folder))
    try:
        loader(file, on_warning=lambda _: None)
    except ConfigError as err:
        message = str(err)
        assert str(file) in message
        assert ".".join(str(p) for p in path) in message, message[:300]
    assert sorted(os.listdir(folder)) == before  # loading writes nothing


def test_a_config_error_names_file_and_dotted_key(tmp_path: Path) -> None:
    file = tmp_path / "frontend.yaml"
    file.write_text(yaml.safe_dump(_replaced(FRONTEND, ("pilot_tokens", "lifetime_seconds"), "a day")))
    try:
        load_frontend_config(file, on_warning=lambda _: None)
    except ConfigError as err:
        assert f"{file}: pilot_tokens.lifetime_seconds:" in str(err)
    else:
        raise AssertionError("a lifetime of 'a day' was accepted")


# ---------------------------------------------------------------------- every kind, as bench/fuzz.py runs them


@pytest.mark.parametrize("kind", sorted(fuzz.KINDS))
def test_generated_hostile_input_is_read_or_refused_never_a_crash_nor_a_write_outside(
    kind: str, tmp_path: Path
) -> None:
    """The CI share of `bench/fuzz.py` (which runs 10,000 cases per kind)."""
    watch = fuzz.WriteWatch(tmp_path.resolve())
    try:
        tally = fuzz.run_kind(kind, 300, seed=7, watch=watch)
    finally:
        watch.active = False
    assert tally.crashes == [], tally.crashes[:5]
    assert watch.outside == [], watch.outside[:5]
    assert tally.cases == 300 and tally.accepted > 0 and tally.refused > 0, "the cases reach both outcomes"
    assert len(tally.reasons) > 1


def test_the_write_watch_sees_a_write_outside_its_folder(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    watch = fuzz.WriteWatch((tmp_path / "inside").resolve())
    try:
        (tmp_path / "inside" / "fine.txt").write_text("ok")
        (tmp_path / "escaped.txt").write_text("no")
    finally:
        watch.active = False
    assert watch.outside == [str((tmp_path / "escaped.txt").resolve())]

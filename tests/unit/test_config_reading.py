"""Reading config files safely: YAML limits, drop-in discovery, a linear merge, and redaction aimed at secrets."""

from __future__ import annotations

import copy
import gc
import itertools
import logging
import os
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from updraft import config
from updraft.config import MAX_DEPTH, MAX_FILE_BYTES, MAX_PROBLEMS_SHOWN, is_secret, read_yaml
from updraft.errors import ConfigError
from updraft.factory.config import load_factory_config
from updraft.frontend.config import load_frontend_config

REPO = Path(__file__).resolve().parents[2]
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwaWxvdEBsYWIifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
BASE = "name: f\nwms_collector: h:1\nschedd: s\n"


def refusal(main: Path, loader: Any = load_factory_config) -> str:
    with pytest.raises(ConfigError) as caught:
        loader(main, on_warning=lambda _: None)
    return str(caught.value)


def bomb(levels: int) -> str:
    names = [f"l{i}" for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"{name}: &{name} [" + ", ".join([f"*{below}"] * 10) + "]" for below, name in itertools.pairwise(names)]
    return "bomb:\n  " + "\n  ".join(lines) + "\n"


# --------------------------------------------------------------------------
# YAML limits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [7, 9, 30])
def test_an_alias_bomb_is_refused_at_once_without_expanding_it(tree, levels):
    main = tree.write("etc/factory.yaml", BASE + bomb(levels))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = refusal(main)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 5_000_000  # 10^7 expanded items would need hundreds of MB
    assert message.startswith(f"{main}:")
    line, column = message.removeprefix(f"{main}:").split(":")[:2]
    assert int(line) == 4 + 5 and int(column) > 1  # the first alias of the level that crosses 100,000 nodes
    assert "aliases expand the document by more than 100,000 nodes" in message


def test_shared_anchors_within_the_alias_allowance_load(tree):
    defaults = "defaults: &d {grid_type: condor, resource: 'ce 127.0.0.1:9619', limits: {max_pilots: 5}}\n"
    entries = "".join(f"  e{i}: *d\n" for i in range(2000))
    main = tree.write("etc/factory.yaml", BASE + defaults + "entries:\n" + entries)
    data = read_yaml(main)
    assert len(data["entries"]) == 2000
    assert data["entries"]["e1999"]["limits"] == {"max_pilots": 5}


def test_an_alias_inside_its_own_anchor_is_refused(tree):
    main = tree.write("etc/factory.yaml", BASE + "x: &a [1, *a]\n")
    assert refusal(main) == (
        f"{main}:4:11: invalid YAML: an alias inside the node it refers to (a structure that contains itself)"
    )


@pytest.mark.parametrize(
    "nested",
    [
        "x: " + "[" * 3000 + "]" * 3000 + "\n",
        "x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
        "x:\n" + "".join(" " * i + "-\n" for i in range(1, 3001)),
        "".join(" " * i + f"k{i}:\n" for i in range(3000)),
    ],
    ids=["flow-lists", "flow-maps", "block-lists", "block-maps"],
)
def test_deep_nesting_is_refused_with_file_place_and_limit(tree, nested):
    main = tree.write("etc/factory.yaml", BASE + nested)
    message = refusal(main)
    assert message.startswith(f"{main}:")
    place, problem = message.removeprefix(f"{main}:").split(": ", 1)
    line, column = (int(n) for n in place.split(":"))
    assert line >= 4 and column > 1
    assert problem == f"invalid YAML: nested more than {MAX_DEPTH} levels deep (the limit)"


def test_nesting_up_to_the_limit_is_read(tree):
    lists = MAX_DEPTH - 1  # the top-level mapping is the first level
    main = tree.write("etc/factory.yaml", "x: " + "[" * lists + "]" * lists + "\n")
    assert "x" in read_yaml(main)
    tree.write("etc/factory.yaml", "x: " + "[" * (lists + 1) + "]" * (lists + 1) + "\n")
    with pytest.raises(ConfigError, match="nested more than"):
        read_yaml(main)


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tree):
    main = tree.write("etc/factory.yaml", "")
    with main.open("wb") as stream:
        stream.truncate(MAX_FILE_BYTES * 4)  # sparse: nothing written
    assert refusal(main) == f"{main}: larger than 16 MiB, the limit for one config file"


def test_a_file_of_exactly_the_size_limit_is_read(tree, monkeypatch):
    monkeypatch.setattr(config, "MAX_FILE_BYTES", len(BASE))
    main = tree.write("etc/factory.yaml", BASE)
    assert read_yaml(main)["schedd"] == "s"
    tree.write("etc/factory.yaml", BASE + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml(main)


@pytest.mark.parametrize(
    ("text", "place", "what"),
    [
        ("name: f\nx: ab\0c\n", "2:6", "control characters are not allowed (character #x0000)"),
        ("name: f\nx: éé\x07\n", "2:6", "control characters are not allowed (character #x0007)"),
        ("name: é\n\n  y: 'ü\x1b'\n", "3:8", "control characters are not allowed (character #x001b)"),
    ],
)
def test_a_reader_error_names_line_and_column(tree, text, place, what):
    main = tree.write("etc/factory.yaml", text)
    assert refusal(main) == f"{main}:{place}: invalid YAML: {what}"


def test_bad_utf8_names_line_and_column(tree):
    main = tree.write("etc/factory.yaml", "")
    main.write_bytes(b"name: f\nx: \xc3\xa9\xc3\xa9 \xff\n")
    assert refusal(main) == f"{main}:2:7: not UTF-8 text (invalid start byte at byte 16)"


def test_every_duplicate_key_and_every_broken_file_is_listed(tree):
    main = tree.factory(
        ("10-dups.yaml", "cycle_seconds: 1\ncycle_seconds: 2\nentries: {a: {x: 1, x: 2}}\n"),
        ("20-syntax.yaml", "name: [f\n"),
        ("30-fine.yaml", "cycle_seconds: 3\n"),
        ("40-nul.yaml", "a: \0\n"),
    )
    drop = main.parent / "factory.d"
    message = refusal(main)
    assert message.startswith("invalid configuration (4 problems):\n")
    assert (
        f"  {drop / '10-dups.yaml'}:2:1: invalid YAML: duplicate key 'cycle_seconds' (first set on line 1)" in message
    )
    assert f"  {drop / '10-dups.yaml'}:3:21: invalid YAML: duplicate key 'x' (first set on line 3)" in message
    assert f"  {drop / '20-syntax.yaml'}:2:1: invalid YAML: " in message
    assert f"  {drop / '40-nul.yaml'}:1:4: invalid YAML: control characters are not allowed" in message


def test_a_flood_of_problems_is_cut_with_a_count(tree):
    main = tree.write("etc/factory.yaml", BASE + "".join(f"k: {i}\n" for i in range(MAX_PROBLEMS_SHOWN + 40)))
    message = refusal(main)
    assert message.startswith(f"invalid configuration ({MAX_PROBLEMS_SHOWN + 39} problems):\n")
    assert message.count("duplicate key 'k'") == MAX_PROBLEMS_SHOWN
    assert message.endswith("\n  ... and 39 more problems")


def test_a_flood_of_validation_problems_is_cut_with_a_count(tree):
    entries = "".join(f"  e{i}: {{enabled: true}}\n" for i in range(MAX_PROBLEMS_SHOWN))
    main = tree.factory(("10-many.yaml", "entries:\n" + entries))
    message = refusal(main)
    total = 2 * MAX_PROBLEMS_SHOWN  # each entry lacks grid_type and resource
    assert message.startswith(f"invalid configuration ({total} problems):\n")
    assert message.count(": required key is missing") == MAX_PROBLEMS_SHOWN
    assert message.endswith(f"\n  ... and {total - MAX_PROBLEMS_SHOWN} more problems")


def test_a_huge_key_is_cut_in_the_message(tree):
    main = tree.factory(("10-long.yaml", "? " + "k" * 100_000 + "\n: 1\n"))
    message = refusal(main)
    assert len(message) < 1000
    assert f"{main.parent / 'factory.d' / '10-long.yaml'}: {'k' * 197}...: unknown key" in message
    tree.write("etc/factory.d/10-long.yaml", ("? " + "k" * 100_000 + "\n: 1\n") * 2)
    message = refusal(main)
    assert message.endswith(f"invalid YAML: duplicate key '{'k' * 56}... (first set on line 1)")


# --------------------------------------------------------------------------
# Merging
# --------------------------------------------------------------------------


class CountingDict(dict[Any, Any]):
    """A dict that counts the keys it is asked about, sets, removes or hands out while iterated."""

    def __init__(self) -> None:
        super().__init__()
        self.touched = 0

    def __iter__(self) -> Any:
        for key in super().__iter__():
            self.touched += 1
            yield key

    def __setitem__(self, key: Any, value: Any) -> None:
        self.touched += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.touched += 1
        super().__delitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.touched += 1
        return super().get(key, default)

    def pop(self, key: Any, default: Any = None) -> Any:
        self.touched += 1
        return super().pop(key, default)


def test_merging_is_linear_in_the_size_of_the_configuration():
    """The work on the origins grows with the entries, not with their square (it was a rescan of
    every stored origin per key: a 1 MB drop-in took 20 s, 10 MB more than ten minutes)."""

    def entry(i: int) -> dict[str, Any]:
        return {"grid_type": "condor", "resource": f"ce{i}", "attributes": {"A": i, "B": "x"}, "limits": {"n": i}}

    def origin_work(count: int) -> int:
        layers = config._Layers()
        layers.origins = CountingDict()
        base = {"entries": {f"e{i}": entry(i) for i in range(count)}}
        override = {"entries": {f"e{i}": {"limits": 7, "attributes": {"A": -1}} for i in range(count)}}
        config._merge(layers, layers.data, base, Path("/a.yaml"))
        config._merge(layers, layers.data, override, Path("/b.yaml"))
        assert len(layers.warnings) == 2 * count
        assert layers.origins[("entries", f"e{count - 1}", "limits")] == (Path("/b.yaml"),)
        assert ("entries", f"e{count - 1}", "limits", "n") not in layers.origins  # the replaced mapping's keys
        assert layers.origins[("entries", f"e{count - 1}", "attributes", "B")] == (Path("/a.yaml"),)
        return layers.origins.touched

    small, large = origin_work(200), origin_work(2000)
    assert small > 200
    assert large <= 10 * small + 100


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("good", [True, False])
def test_the_cyclic_collector_is_left_as_it_was(tree, enabled, good):
    main = tree.factory() if good else tree.write("etc/factory.yaml", "name: [\n")
    (gc.enable if enabled else gc.disable)()
    try:
        try:
            load_factory_config(main)
        except ConfigError:
            assert not good
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_origins_follow_a_mapping_replaced_by_a_value_and_back(tree):
    main = tree.factory(
        ("10-a.yaml", "entries: {site1: {limits: {max_idle: 3}}}"),
        ("20-b.yaml", "entries: {site1: {limits: 5}}"),
        ("30-c.yaml", "entries: {site1: {limits: {max_held: 2}}}"),
    )
    drop = main.parent / "factory.d"
    loaded = load_factory_config(main, on_warning=lambda _: None)
    assert loaded.files_for(("entries", "site1", "limits", "max_held")) == (drop / "30-c.yaml",)
    assert loaded.files_for(("entries", "site1", "limits", "max_idle")) == (drop / "30-c.yaml",)  # gone with 20-b
    limits = loaded.config.entries["site1"].limits
    assert (limits.max_held, limits.max_idle) == (2, type(limits)().max_idle)  # 10-a's max_idle: 3 went with 20-b


# --------------------------------------------------------------------------
# Drop-in discovery
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("30-upper.YAML", "file", "only *.yaml files are read (rename it to 30-upper.yaml to use it)"),
        ("30-mixed.Yml", "file", "only *.yaml files are read (rename it to 30-mixed.yaml to use it)"),
        ("30-short.yml", "file", "only *.yaml files are read (rename it to 30-short.yaml to use it)"),
        ("30-site.yaml~", "file", "only *.yaml files are read"),
        ("30-site.yaml.bak", "file", "only *.yaml files are read"),
        ("30-site.yaml.rpmnew", "file", "only *.yaml files are read"),
        ("README", "file", "only *.yaml files are read"),
        (".30-site.yaml.swp", "file", "a hidden file (only visible *.yaml files are read)"),
        (".30-hidden.yaml", "file", "a hidden file (only visible *.yaml files are read)"),
        ("30-folder.yaml", "dir", "a directory, not a file"),
        ("30-loop.yaml", "loop", "a symlink loop"),
        ("30-dangling.yaml", "dangling", "a dangling symlink (to nowhere.yaml)"),
        ("30-fifo.yaml", "fifo", "not a regular file"),
    ],
)
def test_every_skipped_drop_in_is_named_with_its_reason(tree, caplog, name, make, reason):
    main = tree.factory(("10-real.yaml", "cycle_seconds: 11\n"))
    path = main.parent / "factory.d" / name
    if make == "file":
        path.write_text("cycle_seconds: 99\n")
    elif make == "dir":
        path.mkdir()
        (path / "inner.yaml").write_text("cycle_seconds: 99\n")
    elif make == "loop":
        path.symlink_to(name)
    elif make == "dangling":
        path.symlink_to("nowhere.yaml")
    else:
        os.mkfifo(path)
    with caplog.at_level(logging.WARNING, logger="updraft.config"):
        loaded = load_factory_config(main)
    assert loaded.config.cycle_seconds == 11
    assert loaded.files == (main, main.parent / "factory.d" / "10-real.yaml")
    assert loaded.warnings == (f"{path}: ignored, {reason}",)
    assert [r.getMessage() for r in caplog.records] == [f"{path}: ignored, {reason}"]


@pytest.mark.parametrize(
    ("target", "reason"), [("factory.d", "a symlink loop"), ("gone", "a dangling symlink (to gone)")]
)
def test_a_drop_in_folder_that_is_a_broken_symlink_is_named(tree, target, reason):
    main = tree.factory()
    (main.parent / "factory.d").symlink_to(target)
    loaded = load_factory_config(main, on_warning=lambda _: None)
    assert loaded.files == (main,)
    assert loaded.warnings == (f"{main.parent / 'factory.d'}: ignored, {reason}",)


def test_an_unreadable_yaml_drop_in_is_an_error_not_skipped(tree, monkeypatch):
    """A *.yaml file is meant to be read: one that cannot be (its mode, say) fails the load by name."""
    main = tree.factory(("10-a.yaml", "cycle_seconds: 5\n"), ("20-locked.yaml", "cycle_seconds: 6\n"))
    locked = main.parent / "factory.d" / "20-locked.yaml"
    opened = Path.open

    def refuse_locked(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse_locked)
    assert refusal(main) == f"{locked}: cannot read: Permission denied"


def test_a_symlinked_drop_in_to_a_file_is_read(tree):
    main = tree.factory()
    target = tree.write("elsewhere/site.yaml", "cycle_seconds: 12\n")
    (main.parent / "factory.d").mkdir()
    (main.parent / "factory.d" / "20-linked.yaml").symlink_to(target)
    assert load_factory_config(main).config.cycle_seconds == 12


# --------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        (("monitoring", "writers", "influxdb", "token"), True),
        (("monitoring", "writers", "influxdb", "password"), True),
        (("entries", "s", "attributes", "SSH_Key"), True),
        (("entries", "s", "attributes", "ClientSecret"), True),
        (("entries", "s", "attributes", "My_Token", 0), True),
        (("x", "passwords", "alice"), True),
        (("x", "APIKey"), True),
        (("monitoring", "writers", "influxdb", "token_file"), False),
        (("pilot_tokens", "signing_key_file"), False),
        (("pilot_tokens", "lifetime_seconds"), False),
        (("pilot_tokens", "refresh_seconds"), False),
        (("pilot_tokens", "trust_domain"), False),
        (("pilot_tokens", "identity"), False),
        (("credentials", "key_rotation_seconds"), False),
        (("entries", "monkey", "resource"), False),
        (("entries", "keystone", "limits", "max_idle"), False),
        (("name",), False),
        ((), False),
    ],
)
def test_is_secret_judges_the_value_by_its_own_key(path, secret):
    assert is_secret(path) is secret


FRONTEND_WITH_TOKENS = """\
    name: vo
    vo_collector: h:1
    wms_collector: h:2
    identity: vo@lab
    factories: {f: {identity: f@lab}}
    groups: {main: {job_constraint: 'true', match_expr: 'true'}}
    pilot_tokens:
      signing_key_file: relative/POOL
      trust_domain: lab
      identity: pilot@lab
      lifetime_seconds: -5
      refresh_seconds: 'soon'
"""


def test_pilot_token_errors_point_at_the_key_and_show_its_value(tree):
    message = refusal(tree.frontend(main=FRONTEND_WITH_TOKENS), load_frontend_config)
    assert "pilot_tokens.signing_key_file: expected an absolute path (got 'relative/POOL')" in message
    assert "pilot_tokens.lifetime_seconds: Input should be greater than or equal to 1 (got -5)" in message
    assert "pilot_tokens.refresh_seconds: Input should be a valid integer (got 'soon')" in message
    assert "redacted" not in message


def test_an_influxdb_token_in_list_form_writers_is_not_repeated(tree):
    main = tree.factory(
        ("10-m.yaml", "monitoring: {writers: [json, {influxdb: {token: s3cr3t-t0ken-value, url: 'http://h:8086'}}]}")
    )
    message = refusal(main)
    assert "s3cr3t-t0ken-value" not in message
    assert (
        "monitoring.writers: expected writer names or a mapping of writer name to settings "
        "(item [1] is a dict, not a name)" in message
    )
    assert "'token': <redacted>" in message


def test_a_jwt_in_a_conflict_warning_is_masked_in_the_warning_and_the_log(tree, caplog):
    main = tree.factory(
        ("10-a.yaml", f"entries: {{site1: {{attributes: {{Note: '{JWT}'}}}}}}"),
        ("20-b.yaml", "entries: {site1: {attributes: {Note: plain}}}"),
    )
    with caplog.at_level(logging.WARNING, logger="updraft.config"):
        loaded = load_factory_config(main)
    assert len(loaded.warnings) == 1
    assert JWT[:20] not in loaded.warnings[0]
    assert "sets '[redacted]'" in loaded.warnings[0]
    assert "sets 'plain'" in loaded.warnings[0]
    assert all(JWT[:20] not in record.getMessage() for record in caplog.records)


def test_a_secret_echoed_by_a_validator_is_scrubbed_from_the_message(tree):
    # the secret sits under a secret key; the same text elsewhere (a key name) is masked too
    main = tree.factory(("10-x.yaml", "entries: {site1: {attributes: {Api_Key: pa55word-xyz, pa55word-xyz: 1}}}"))
    message = refusal(main)
    assert "pa55word-xyz" not in message


# --------------------------------------------------------------------------
# A corpus of malformed files
# --------------------------------------------------------------------------

SECRETS = ("hunter2-pass-3141", "t0ken-9f8e7d6c", JWT, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
"""Values that must never appear: the first two only ever under secret keys, the others have secret shapes."""


def shipped(name: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for path in [REPO / "etc" / f"{name}.yaml", *sorted((REPO / "etc" / f"{name}.d").glob("*.yaml"))]:
        data.update({k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "entries"})
        data.setdefault("entries", {}).update((yaml.safe_load(path.read_text()) or {}).get("entries", {}))
    if name == "frontend":
        del data["entries"]
        data["pilot_tokens"] = {"signing_key_file": "/etc/POOL", "trust_domain": "lab", "identity": "p@lab"}
    data["monitoring"] = {"writers": {"json": {}, "influxdb": {"url": "http://h:8086", "token": SECRETS[1]}}}
    return data


def leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += leaves(value, (*path, index))
    return found


def set_at(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def delete_at(data: Any, path: tuple[Any, ...]) -> None:
    for part in path[:-1]:
        data = data[part]
    del data[path[-1]]


ODD_VALUES: tuple[Any, ...] = (
    None, True, -1, 0, 10**30, 1.5, float("nan"), float("inf"), "", " ", "x" * 20_000,
    [], [1, [2]], {}, {"a": {"b": 1}}, JWT, f"http://user:{SECRETS[0]}@h:1", PEM, "../../etc/passwd", "a\nb",
)  # fmt: skip


def data_mutation(rng: random.Random, data: dict[str, Any]) -> str:
    """The shipped config with one to three structural changes, dumped as YAML."""
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = leaves(data)
        path = rng.choice(paths)
        move = rng.choice(("delete", "retype", "retype", "secret", "secret-key"))
        if move == "delete":
            delete_at(data, path)
        elif move == "retype":
            set_at(data, path, copy.deepcopy(rng.choice(ODD_VALUES)))
        elif move == "secret":
            key = rng.choice(("token", "password", "Access_Token", "client_secret", "ssh_key"))
            target = path[:-1]
            parent = data
            for part in target:
                parent = parent[part]
            if isinstance(parent, dict):
                parent[key] = rng.choice(SECRETS)
        else:
            set_at(data, path, {JWT: 1})
    return yaml.safe_dump(data, allow_unicode=True)


def text_mutation(rng: random.Random, text: str) -> str:
    """The shipped file's text with a byte-level or YAML-level fault."""
    cut = rng.randrange(len(text))
    return rng.choice(
        (
            text[:cut] + "\0" + text[cut:],
            text[:cut],
            text[:cut] + "\t" + text[cut:],
            text[:cut] + "]" + text[cut:],
            text + bomb(rng.randint(5, 9)),
            text + "deep: " + "[" * rng.randint(60, 5000) + "\n",
            text + "deep: " + "[" * 70 + "]" * 70 + "\n",
            text + "\n".join(text.splitlines()[:5]) + "\n",  # duplicate keys
            text + f"extra_token: {SECRETS[0]}\n",
            text + f"pilot_tokens: {{password: {SECRETS[0]}}}\n",
            text + "big: " + "y" * rng.randint(1000, 200_000) + "\n",
            text + "x: &a [*a]\n",
        )
    )


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str, bytes]]:
    """(component, kind, file bytes) for 240 malformed files, the same on every run."""
    rng = random.Random(15)
    cases: list[tuple[str, str, bytes]] = []
    for component in ("factory", "frontend"):
        data = shipped(component)
        text = yaml.safe_dump(data)
        for _ in range(80):
            cases.append((component, "data", data_mutation(rng, data).encode("utf-8", "surrogatepass")))
        for _ in range(40):
            raw = text_mutation(rng, text).encode("utf-8")
            if rng.random() < 0.2:
                at = rng.randrange(len(raw))
                raw = raw[:at] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80")) + raw[at:]
            cases.append((component, "text", raw))
    return cases


def test_a_corpus_of_malformed_files_loads_or_is_refused_naming_a_file(tmp_path, caplog, corpus):
    assert len(corpus) >= 200
    loaders = {"factory": load_factory_config, "frontend": load_frontend_config}
    outcomes = {"loaded": 0, "refused": 0}
    started = time.perf_counter()
    for number, (component, _kind, raw) in enumerate(corpus):
        folder = tmp_path / str(number)
        folder.mkdir()
        main = folder / f"{component}.yaml"
        as_drop_in = number % 2 == 1
        if as_drop_in:  # the fault in a drop-in over a minimal main file
            main.write_text(yaml.safe_dump({"name": "x"}))
            (folder / f"{component}.d").mkdir()
            (folder / f"{component}.d" / "50-bad.yaml").write_bytes(raw)
        else:
            main.write_bytes(raw)
        warnings: list[str] = []
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            try:
                loaders[component](main, on_warning=warnings.append if number % 3 else None)
                outcomes["loaded"] += 1
                said = ""
            except ConfigError as err:
                outcomes["refused"] += 1
                said = str(err)
                assert str(folder) in said, said
        heard = "\n".join([said, *warnings, *(record.getMessage() for record in caplog.records)])
        for secret in SECRETS:
            assert secret not in heard, (number, heard)
        assert "Traceback" not in heard
    assert outcomes["refused"] > 150 and sum(outcomes.values()) == len(corpus)
    assert time.perf_counter() - started < 30

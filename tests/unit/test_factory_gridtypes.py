"""Grid type plugins: the registry, a third party's plugin through an entry point, each grid type's keys and checks."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydantic
import pytest
from click.testing import CliRunner

from updraft import plugins
from updraft.config import ConfigModel, NonBlankStr
from updraft.errors import ConfigError
from updraft.factory import gridtypes
from updraft.factory.cli import factory as factory_cli
from updraft.factory.config import Entry, FactoryConfig, load_factory_config
from updraft.factory.gridtypes import GridTypePlugin, Problem
from updraft.factory.gridtypes.ec2 import Ec2Settings
from updraft.factory.render import PilotSpec, check_entry, render_submit, submit_template

OURS = ["condor", "arc", "batch", "ec2", "gce"]
PILOT = PilotSpec(
    frontend="vo",
    group="main",
    security_class="pilot",
    credential_id="vo.main.1",
    executable=Path("/usr/libexec/updraft/pilot.sh"),
    work_dir=Path("/var/lib/updraft/x"),
)


def entry(grid_type: str, resource: str = "r", **keys: object) -> Entry:
    return Entry.model_validate({"grid_type": grid_type, "resource": resource, **keys})


def entry_problem(grid_type: str, **keys: object) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        Entry.model_validate({"grid_type": grid_type, "resource": "r", **keys})
    return str(caught.value)


def factory_with(entries: dict[str, dict[str, object]]) -> FactoryConfig:
    return FactoryConfig.model_validate({"name": "f", "wms_collector": "h:1", "schedd": "s", "entries": entries})


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------


def test_our_grid_types_are_registered_in_a_fixed_order() -> None:
    assert gridtypes.names()[:5] == OURS
    for name in OURS:
        found = gridtypes.plugin(name)
        assert found.name == name and found.template == f"{name}.sub.j2"


def test_an_unknown_grid_type_names_the_available_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown grid type 'slurm' \(Input should be 'condor', 'arc', "
        r"'batch', 'ec2' or 'gce'\)",
    ):
        gridtypes.plugin("slurm")
    assert "Input should be 'condor', 'arc', 'batch', 'ec2' or 'gce'" in entry_problem("slurm")


def test_a_refused_key_names_the_grid_types_it_belongs_to() -> None:
    assert gridtypes.owners_of(("batch_queue",), besides="condor") == ["batch", "arc"]
    assert gridtypes.owners_of(("cloud",), besides="batch") == ["ec2", "gce"]
    assert gridtypes.owners_of(("cloud", "zone"), besides="gce") == ["ec2"]
    assert gridtypes.owners_of(("nothing",), besides="condor") == []


# --------------------------------------------------------------------------
# A third party's grid type, published under the entry point group
# --------------------------------------------------------------------------


class SlurmRestSettings(ConfigModel):
    partition: NonBlankStr
    account: NonBlankStr | None = None


def _slurmrest_problems(settings: SlurmRestSettings, resource: str) -> list[Problem]:
    return [] if resource.startswith("https://") else [Problem("resource", "expected the REST endpoint's https URL")]


THIRD_PARTY_TEMPLATE = """\
{% extends "pilot.sub.j2" %}
{% block grid %}

slurm_partition = {{ grid.partition }}
{% endblock %}
"""


@dataclass(frozen=True)
class FakeEntryPoint:
    """What `importlib.metadata.entry_points` yields, reduced to what the registry uses."""

    name: str
    target: object
    group: str = gridtypes.ENTRY_POINT_GROUP

    def load(self) -> object:
        return self.target


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GridTypePlugin]:
    """A package ``acme_grids`` with its template, and its plugin (plus two broken ones) as entry points."""
    package = tmp_path / "acme_grids"
    (package / "templates").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "templates" / "slurmrest.sub.j2").write_text(THIRD_PARTY_TEMPLATE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_grids", raising=False)  # another test's tmp_path
    plugin = GridTypePlugin(
        "slurmrest", SlurmRestSettings, "slurmrest.sub.j2", template_package="acme_grids", checks=_slurmrest_problems
    )
    impostor = GridTypePlugin("condor", SlurmRestSettings, "slurmrest.sub.j2", template_package="acme_grids")
    untemplated = GridTypePlugin("untemplated", SlurmRestSettings, "untemplated.sub.j2", template_package="acme_grids")
    published = [
        FakeEntryPoint("slurmrest", plugin),
        FakeEntryPoint("condor", impostor),
        FakeEntryPoint("notaplugin", object()),
        FakeEntryPoint("misnamed", plugin),
        FakeEntryPoint("untemplated", untemplated),
    ]

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        return [ep for ep in published if ep.group == group]

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    yield plugin


def test_a_third_party_grid_type_validates_renders_and_checks(third_party: GridTypePlugin) -> None:
    config = factory_with(
        {"hpc": {"grid_type": "slurmrest", "resource": "https://slurm.example.org", "partition": "pilots"}}
    )
    hpc = config.entries["hpc"]
    assert hpc.grid == SlurmRestSettings(partition="pilots")
    description = render_submit(config, "hpc", hpc, PILOT)
    assert description["grid_resource"] == "slurmrest https://slurm.example.org"
    assert description["slurm_partition"] == "pilots"
    assert description["+UpdraftEntry"] == '"hpc"'  # the shared part comes from our pilot.sub.j2
    assert "resource\n  expected the REST endpoint's https URL" in entry_problem("slurmrest", partition="p")


def test_a_third_party_grid_type_is_listed_and_its_keys_are_checked(third_party: GridTypePlugin) -> None:
    assert gridtypes.names() == [*OURS, "misnamed", "notaplugin", "slurmrest", "untemplated"]
    message = entry_problem("slurmrest", partition="p", cloud={"image": "i", "instance_type": "t"}, acount="a")
    assert "cloud\n  only for ec2 and gce entries, not slurmrest" in message
    assert "acount\n  unknown key" in message
    assert (
        "Input should be 'condor', 'arc', 'batch', 'ec2', 'gce', 'misnamed', 'notaplugin', 'slurmrest' or 'untemplated'"
        in (entry_problem("nope"))
    )


def test_a_third_party_cannot_shadow_our_grid_types(third_party: GridTypePlugin) -> None:
    assert gridtypes.plugin("condor").settings is not SlurmRestSettings
    assert gridtypes.names().count("condor") == 1


@pytest.mark.parametrize(
    "name, problem",
    [
        ("notaplugin", "its entry point is not an updraft GridTypePlugin"),
        ("misnamed", "its plugin calls itself 'slurmrest'"),
    ],
)
def test_a_broken_third_party_plugin_is_a_config_error(third_party: GridTypePlugin, name: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        gridtypes.plugin(name)
    assert problem in entry_problem(name)


# --------------------------------------------------------------------------
# Each grid type: its keys (when the config is loaded) and its checks (when pilots are rendered)
# --------------------------------------------------------------------------


def test_every_problem_of_an_entry_is_reported_at_once_at_its_own_key() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        entry("batch", ssh_host="nohost", arc_rte="x", limits={"max_idle": -1})
    assert {".".join(map(str, error["loc"])) for error in caught.value.errors()} == {
        "batch_system",
        "ssh_host",
        "arc_rte",
        "limits.max_idle",
    }


def test_condor_has_no_keys_of_its_own_and_accepts_ce_credentials() -> None:
    assert entry("condor", "ce@x h:1").grid_resource == "condor ce@x h:1"
    assert "batch_queue\n  only for batch and arc entries, not condor" in entry_problem("condor", batch_queue="q")
    assert gridtypes.plugin("condor").ce_credentials == "accepted"


def test_arc_takes_queue_runtime_environments_and_resources_and_needs_a_credential() -> None:
    arc = entry("arc", "https://arc/x", batch_queue="q", arc_rte="ENV/PROXY", arc_resources="<a/>")
    assert (arc.grid_resource, arc.setting("arc_rte"), arc.batch_queue) == ("arc https://arc/x", "ENV/PROXY", "q")
    assert "ssh_host\n  only for batch entries, not arc" in entry_problem("arc", ssh_host="u@h")
    assert gridtypes.plugin("arc").ce_credentials == "required"


@pytest.mark.parametrize(
    "keys, grid_resource",
    [
        ({"batch_system": "pbs"}, "batch pbs"),
        ({"batch_system": "slurm", "ssh_host": "u@login"}, "batch slurm u@login"),
    ],
)
def test_batch_builds_its_grid_resource_from_the_batch_system_and_login(keys: dict, grid_resource: str) -> None:
    assert entry("batch", "label", **keys).grid_resource == grid_resource


def test_batch_needs_a_known_batch_system() -> None:
    assert "required for batch entries: one of slurm, pbs, lsf, sge, condor" in entry_problem("batch")
    assert "Input should be 'slurm', 'pbs', 'lsf', 'sge' or 'condor'" in entry_problem("batch", batch_system="htc")


def test_ec2_lists_every_problem_when_the_entry_loads() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        entry("ec2", "https://ec2.example/ extra")
    assert [(error["loc"], error["msg"]) for error in caught.value.errors()] == [
        (("cloud",), "required for ec2 entries (at least image and instance_type)"),
        (("resource",), "an ec2 resource is the service URL alone, e.g. https://ec2.us-east-1.amazonaws.com/"),
    ]
    with pytest.raises(pydantic.ValidationError, match="required: the grid manager signs every EC2 request"):
        entry("ec2", "https://ec2.example/", cloud={"image": "i", "instance_type": "t"})
    keys = {"access_key_file": "/etc/a", "secret_key_file": "/etc/s"}
    check_entry("vm", entry("ec2", "https://ec2.example/", cloud={"image": "i", "instance_type": "t", **keys}))


@pytest.mark.parametrize(
    ("cloud", "message"),
    [
        ({"tags": {"UpdraftEntry": "x"}}, "tags starting with 'Updraft' are set by the factory"),
        ({"tags": {"cost-centre": "x"}}, "expected letters and digits, starting with a letter"),
        ({"security_groups": ["a,b"]}, "no commas or spaces"),
        ({"security_groups": ["a b"]}, "no commas or spaces"),
        ({"spot_price": "cheap"}, "expected a price in dollars per hour"),
        ({"max_token_lifetime_seconds": 0}, "greater than or equal to 1"),
    ],
)
def test_ec2_machine_keys_refuse_what_would_break_the_submit_description(cloud: dict, message: str) -> None:
    keys = {"image": "i", "instance_type": "t", "access_key_file": "/etc/a", "secret_key_file": "/etc/s"}
    with pytest.raises(pydantic.ValidationError, match=message):
        entry("ec2", "https://ec2.example/", cloud={**keys, **cloud})


def test_a_render_check_still_guards_an_entry_built_without_validation() -> None:
    """`model_construct` skips the load-time checks; rendering must still refuse such an entry."""
    vm = Entry.model_construct(grid_type="ec2", resource="https://ec2.example/ extra", grid=Ec2Settings())
    with pytest.raises(ConfigError) as caught:
        check_entry("vm", vm)
    assert str(caught.value).split("; ") == [
        "entries.vm.cloud: required for ec2 entries (at least image and instance_type)",
        "entries.vm.resource: an ec2 resource is the service URL alone, e.g. https://ec2.us-east-1.amazonaws.com/",
    ]


def test_ec2_and_gce_machines_refuse_each_others_keys() -> None:
    assert "auth_file not used by ec2 entries (only by gce entries)" in entry_problem(
        "ec2", cloud={"image": "i", "instance_type": "t", "auth_file": "/a"}
    )
    assert "zone not used by gce entries (only by ec2 entries)" in entry_problem(
        "gce", cloud={"image": "i", "instance_type": "t", "zone": "z"}
    )
    assert "access_key_file and secret_key_file go together" in entry_problem(
        "ec2", cloud={"image": "i", "instance_type": "t", "secret_key_file": "/s"}
    )


def test_gce_wants_a_resource_of_three_words() -> None:
    cloud = {"image": "i", "instance_type": "t"}
    check_entry("vm", entry("gce", "https://g/v1 project zone", cloud=cloud))
    assert "resource\n  a gce resource is '<service URL> <project> <zone>'" in entry_problem(
        "gce", cloud=cloud, resource="https://g/v1 project"
    )


def test_cloud_pilots_transfer_no_files() -> None:
    assert [name for name in OURS if not gridtypes.plugin(name).transfers_files] == ["ec2", "gce"]


def test_an_entry_dumps_flat_and_validates_again() -> None:
    hpc = entry("batch", "label", batch_system="slurm", ssh_host="u@h")
    dumped = hpc.model_dump(mode="json")
    assert (dumped["batch_system"], dumped["ssh_host"], dumped["batch_queue"]) == ("slurm", "u@h", None)
    assert "grid" not in dumped
    assert Entry.model_validate(dumped) == hpc
    assert Entry.model_validate_json(hpc.model_dump_json()) == hpc


def test_grid_is_not_a_key_of_the_yaml() -> None:
    assert "grid\n  unknown key" in entry_problem("condor", grid={})


# --------------------------------------------------------------------------
# check-config: every entry's render problems at once, each with its file
# --------------------------------------------------------------------------


def test_check_config_names_the_file_and_key_of_every_render_problem(tree) -> None:
    main = tree.factory(
        (
            "50-clouds.yaml",
            textwrap.dedent("""\
        entries:
          aws: {grid_type: ec2, resource: "https://ec2.example/ extra"}
          google: {grid_type: gce, resource: "https://g/v1 p z"}
    """),
        )
    )
    result = CliRunner().invoke(factory_cli, ["check-config", "-c", str(main)])
    assert result.exit_code == 1
    drop_in = main.parent / "factory.d" / "50-clouds.yaml"
    problems = result.stderr.splitlines()
    assert problems[0] == "updraft: error: invalid configuration (3 problems):"
    assert problems[1:] == [
        f"  {drop_in}: entries.aws.cloud: required for ec2 entries (at least image and instance_type) (got None)",
        f"  {drop_in}: entries.aws.resource: an ec2 resource is the service URL alone, "
        "e.g. https://ec2.us-east-1.amazonaws.com/ (got 'https://ec2.example/ extra')",
        f"  {drop_in}: entries.google.cloud: required for gce entries (at least image and instance_type) (got None)",
    ]


def test_a_nested_key_named_by_a_grid_type_check_is_reported_at_its_full_path(tree, third_party) -> None:
    """A check's key may be dotted; the loader names the file and the whole path, e.g.
    ``entries.hpc.cloud.instance_type`` (here a third party's check on a key of its own)."""
    main = tree.factory(("50-hpc.yaml", "entries: {hpc: {grid_type: slurmrest, resource: http://x, partition: p}}"))
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    assert f"{main.parent / 'factory.d' / '50-hpc.yaml'}: entries.hpc.resource: expected the REST" in str(caught.value)


def test_a_loaded_batch_entry_keeps_its_grid_keys(tree) -> None:
    main = tree.factory(("50-hpc.yaml", "entries: {hpc: {grid_type: batch, resource: r, batch_system: lsf}}"))
    assert load_factory_config(main).config.entries["hpc"].grid_resource == "batch lsf"


def test_check_config_proves_each_grid_types_template_is_installed(tree, third_party: GridTypePlugin) -> None:
    main = tree.factory(
        (
            "50-acme.yaml",
            textwrap.dedent("""\
        entries:
          ok: {grid_type: slurmrest, resource: "https://a", partition: p}
          first: {grid_type: untemplated, resource: r, partition: p}
          second: {grid_type: untemplated, resource: r, partition: p}
    """),
        )
    )
    result = CliRunner().invoke(factory_cli, ["check-config", "-c", str(main)])
    assert result.exit_code == 1
    problems = result.stderr.splitlines()
    assert problems[0] == "updraft: error: invalid configuration (1 problem):"
    assert problems[1].startswith(
        f"  {main.parent / 'factory.d' / '50-acme.yaml'}: entries.first.grid_type: "
        "grid type untemplated: template untemplated.sub.j2 not found in acme_grids/templates"
    )


def test_a_template_that_does_not_parse_is_a_config_error_naming_its_line(
    third_party: GridTypePlugin, tmp_path: Path
) -> None:
    (tmp_path / "acme_grids" / "templates" / "broken.sub.j2").write_text('{% extends "pilot.sub.j2" %}\n{% if %}\n')
    broken = GridTypePlugin("broken", SlurmRestSettings, "broken.sub.j2", template_package="acme_grids")
    with pytest.raises(ConfigError, match=r"^grid type broken: template broken.sub.j2, line 2: "):
        submit_template(broken)
    with pytest.raises(ConfigError, match="not found in no_such_package/templates"):
        submit_template(GridTypePlugin("x", SlurmRestSettings, "x.sub.j2", template_package="no_such_package"))


def test_a_dotted_key_of_a_grid_type_check_is_reported_at_its_full_path(tree, monkeypatch) -> None:
    """A check may name a nested key (``cloud.instance_type``): the loader names file and whole path."""
    ec2 = gridtypes.plugin("ec2")
    picky = dataclasses.replace(ec2, checks=lambda settings, resource: [Problem("cloud.instance_type", "too big")])
    monkeypatch.setattr(gridtypes, "plugin", lambda name: picky if name == "ec2" else ec2)
    main = tree.factory(
        ("50-vm.yaml", "entries: {vm: {grid_type: ec2, resource: u, cloud: {image: i, instance_type: huge}}}")
    )
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    assert f"  {main.parent / 'factory.d' / '50-vm.yaml'}: entries.vm.cloud.instance_type: too big (got 'huge')" in (
        str(caught.value).splitlines()
    )


def test_grid_type_checks_are_listed_beside_the_entrys_other_problems(tree) -> None:
    """One bad key elsewhere in the entry must not hide what its grid type finds wrong."""
    main = tree.factory(("50-vm.yaml", "entries: {vm: {grid_type: ec2, resource: 'u v', limits: {max_idle: -1}}}"))
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    keys = [line.split(": ")[1] for line in str(caught.value).splitlines()[1:]]
    assert keys == ["entries.vm.limits.max_idle", "entries.vm.cloud", "entries.vm.resource"]

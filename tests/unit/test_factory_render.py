"""Pilot submit descriptions: golden files per grid type, HTCondor's own parser, quoting, config checks.

Goldens live in tests/unit/golden/factory/<case>.sub. After an intended
template change, rewrite them with

    UPDRAFT_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_factory_render.py

and review the diff; a normal run only compares.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import classad2
import htcondor2
import jinja2
import pydantic
import pytest

from updraft.errors import ConfigError
from updraft.factory.config import Entry, FactoryConfig, load_factory_config
from updraft.factory.render import (
    PilotSpec,
    RenderError,
    arguments_value,
    classad_literal,
    parse_submit,
    render_submit,
    render_submit_text,
    submit_templates,
)

GOLDEN_DIR = Path(__file__).parent / "golden" / "factory"
REGENERATE = os.environ.get("UPDRAFT_REGENERATE_GOLDEN") == "1"
REPO = Path(__file__).resolve().parents[2]

FACTORY = FactoryConfig.model_validate(
    {
        "name": "lab-factory",
        "wms_collector": "127.0.0.1:29619",
        "schedd": "factory@lab",
        "entries": {
            "site1": {
                "grid_type": "condor",
                "resource": "ce@site1.lab 127.0.0.1:29620",
                "attributes": {"GLIDEIN_Site": "Site1", "GLIDEIN_CPUS": 4},
                "memory_mb": 8000,
                "max_walltime_seconds": 7200,
                "pilot_attributes": {"GLIDEIN_Site": "Site 1", "GLIDEIN_Debug": True, "GLIDEIN_MaxMemMBs": 8000},
            },
            "site2": {"grid_type": "condor", "resource": "ce@site2.lab 127.0.0.1:29621"},
            "nordic": {
                "grid_type": "arc",
                "resource": "https://arc.example.org:443/arex/rest/1.0",
                "attributes": {"GLIDEIN_CPUS": 8},
                "memory_mb": 16000,
                "batch_queue": "grid",
                "arc_rte": "ENV/PROXY USE_DELEGATION_DB,ENV/GLITE",
                "arc_resources": "<NetworkInfo>gigabitethernet</NetworkInfo>",
            },
            **{
                f"hpc-{system}": {
                    "grid_type": "batch",
                    "resource": f"{system} on the local cluster",
                    "batch_system": system,
                }
                for system in ("slurm", "pbs", "lsf", "sge", "condor")
            },
            "hpc-nodes": {
                "grid_type": "batch",
                "resource": "slurm, two nodes a pilot",
                "batch_system": "slurm",
                "partition": "compute",
                "account": "vo-project",
                "walltime_seconds": 5430,
                "nodes": 2,
                "cpus_per_node": 4,
                "memory_mb_per_node": 8000,
                "directives": ["--qos=normal", "--constraint=haswell"],
                "lifetime_margin_seconds": 300,
                "pilot_attributes": {"GLIDEIN_Site": "HPC"},
            },
            "hpc-remote": {
                "grid_type": "batch",
                "resource": "slurm@login.hpc.example.org",
                "batch_system": "slurm",
                "ssh_host": "pilots@login.hpc.example.org:2222",
                "partition": "debug@cluster1",
                "attributes": {"GLIDEIN_CPUS": 16},
                "memory_mb": 32000,
                "max_walltime_seconds": 172800,
                "pilot_attributes": {"GLIDEIN_Site": "HPC"},
            },
            "aws": {
                "grid_type": "ec2",
                "resource": "https://ec2.us-east-1.amazonaws.com/",
                "cloud": {
                    "image": "ami-0abc1234",
                    "instance_type": "m5.xlarge",
                    "key_name": "updraft-ops",
                    "zone": "us-east-1b",
                    "access_key_file": "/etc/updraft/ec2/access.key",
                    "secret_key_file": "/etc/updraft/ec2/secret.key",
                    "security_groups": ["pilots", "sg-ssh"],
                    "tags": {"Project": "vo-compute", "CostCentre": "4711"},
                    "spot_price": "0.085",
                },
                "max_walltime_seconds": 14400,
                "pilot_attributes": {"GLIDEIN_Site": "AWS us-east-1", "GLIDEIN_Spot": False},
            },
            "google": {
                "grid_type": "gce",
                "resource": "https://www.googleapis.com/compute/v1 updraft-project us-central1-a",
                "cloud": {
                    "image": "updraft-pilot-image",
                    "instance_type": "n2-standard-4",
                    "auth_file": "/etc/updraft/gce/auth.json",
                },
                "pilot_attributes": {"GLIDEIN_Site": "GCE, central"},
            },
        },
    }
)

PILOT = PilotSpec(
    frontend="lab-vo",
    group="main",
    security_class="pilot",
    credential_id="lab-vo.main.token1",
    executable=Path("/usr/libexec/updraft/pilot.sh"),
    work_dir=Path("/var/lib/updraft/factory/entries/ENTRY/lab-vo"),
)
TOKEN: dict[str, Any] = {"token_file": Path("/var/lib/updraft/factory/creds/lab-vo.main.token1")}
VM_MANIFEST = ("https://factory.example/stage/entries/ENTRY/0a1b2c3d4e5f6071/manifest", "ab" * 32)
CLOUD: dict[str, Any] = {
    "user_data_file": Path("/var/lib/updraft/factory/credentials/lab-vo/0123456789abcdef0123456789abcdef.userdata"),
    "vm_manifest": VM_MANIFEST,
    "arguments": ("--collector", "vo.example:9618", "--max-walltime", "14100"),
}
PROXY: dict[str, Any] = {"proxy_file": Path("/var/lib/updraft/factory/creds/lab-vo.main.proxy")}

CASES = {
    "condor": ("site1", TOKEN),
    "condor_defaults": ("site2", TOKEN),
    "arc": ("nordic", PROXY),
    "batch_slurm": ("hpc-slurm", {}),
    "batch_pbs": ("hpc-pbs", {}),
    "batch_lsf": ("hpc-lsf", {}),
    "batch_sge": ("hpc-sge", {}),
    "batch_condor": ("hpc-condor", {}),
    "batch_slurm_ssh": ("hpc-remote", {}),
    "batch_slurm_nodes": ("hpc-nodes", {}),
    "ec2": ("aws", CLOUD),
    "gce": ("google", CLOUD),
}


def pilot_for(entry_name: str, **changes: Any) -> PilotSpec:
    work_dir = Path(str(PILOT.work_dir).replace("ENTRY", entry_name))
    return dataclasses.replace(PILOT, work_dir=work_dir, **changes)


def render_case(case: str) -> tuple[str, dict[str, str]]:
    entry_name, credentials = CASES[case]
    entry = FACTORY.entries[entry_name]
    pilot = pilot_for(entry_name, **credentials)
    return render_submit_text(FACTORY, entry_name, entry, pilot), render_submit(FACTORY, entry_name, entry, pilot)


def classad_value(submit: htcondor2.Submit, attr: str) -> object:
    """What the schedd would store for ``+attr``: the expanded text, parsed and evaluated as ClassAd."""
    return classad2.ExprTree(submit.expand(f"MY.{attr}")).eval()


# --------------------------------------------------------------------------
# Golden files and HTCondor's own submit parser, for every grid type
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_description_matches_its_golden_file(case: str) -> None:
    text, _ = render_case(case)
    golden = GOLDEN_DIR / f"{case}.sub"
    if REGENERATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run with UPDRAFT_REGENERATE_GOLDEN=1 and review it"
    assert text == golden.read_text(), f"{case} differs from {golden} (regenerate only if intended)"


def test_every_golden_file_belongs_to_a_case() -> None:
    assert {path.stem for path in GOLDEN_DIR.glob("*.sub")} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_htcondor_accepts_the_description_and_reads_back_the_bookkeeping(case: str) -> None:
    entry_name, _ = CASES[case]
    entry = FACTORY.entries[entry_name]
    _, description = render_case(case)
    submit = htcondor2.Submit(description)
    assert submit.get("universe") == "grid"
    assert submit.get("grid_resource") == entry.grid_resource
    assert str(submit).rstrip().endswith("queue")
    # htcondor2 stores "+Attr" as "MY.Attr"; each must be one ClassAd literal of the right value.
    expected = {
        "UpdraftPilot": True,
        "UpdraftFactory": "lab-factory",
        "UpdraftEntry": entry_name,
        "UpdraftFrontend": "lab-vo",
        "UpdraftGroup": "main",
        "UpdraftSecurityClass": "pilot",
        "UpdraftCredentialId": "lab-vo.main.token1",
    }
    assert {attr: classad_value(submit, attr) for attr in expected} == expected
    assert submit.get("periodic_remove") == (
        f"JobStatus == 2 && time() - EnteredCurrentStatus > {entry.max_walltime_seconds}"
    )
    assert classad2.ExprTree(submit.get("periodic_remove")) is not None


def test_every_grid_type_and_batch_system_has_a_case() -> None:
    entries = [FACTORY.entries[name] for name, _ in CASES.values()]
    assert {e.grid_type for e in entries} == {"condor", "arc", "batch", "ec2", "gce"}
    assert {e.batch_system for e in entries if e.grid_type == "batch"} == {"slurm", "pbs", "lsf", "sge", "condor"}
    assert any(e.ssh_host for e in entries)


# --------------------------------------------------------------------------
# What each grid type gets
# --------------------------------------------------------------------------


def test_condor_entry_runs_a_vanilla_job_at_the_ce_with_the_entry_resources() -> None:
    _, d = render_case("condor")
    assert d["grid_resource"] == "condor ce@site1.lab 127.0.0.1:29620"
    assert (d["+remote_jobuniverse"], d["+remote_RequestCpus"], d["+remote_RequestMemory"]) == ("5", "4", "8000")
    assert d["scitokens_file"] == "/var/lib/updraft/factory/creds/lab-vo.main.token1"
    assert d["output"] == "/var/lib/updraft/factory/entries/site1/lab-vo/pilot.$(Cluster).$(Process).out"
    assert d["log"] == "/var/lib/updraft/factory/entries/site1/lab-vo/pilots.log"
    assert d["transfer_executable"] == "true"


def test_unset_memory_leaves_no_memory_request() -> None:
    _, d = render_case("condor_defaults")
    assert "+remote_RequestMemory" not in d and d["+remote_RequestCpus"] == "1"


def test_batch_grid_resource_names_the_batch_system_and_the_ssh_login() -> None:
    assert render_case("batch_pbs")[1]["grid_resource"] == "batch pbs"
    _, d = render_case("batch_slurm_ssh")
    assert d["grid_resource"] == "batch slurm pilots@login.hpc.example.org:2222"
    assert (d["batch_queue"], d["request_cpus"], d["request_memory"], d["batch_runtime"]) == (
        "debug@cluster1",
        "16",
        "32000",
        "172800",
    )
    assert d["batch_extra_submit_args"] == "--nodes=1 --ntasks-per-node=1 --cpus-per-task=16"
    sge = render_case("batch_sge")[1]
    assert "batch_queue" not in sge and "batch_extra_submit_args" not in sge and "batch_project" not in sge


def test_one_node_slurm_entry_asks_sbatch_for_its_cores() -> None:
    """The blahp passes no core count for request_cpus, so the cores go on the #SBATCH line."""
    _, d = render_case("batch_slurm")
    assert (d["grid_resource"], d["request_cpus"], d["batch_runtime"]) == ("batch slurm", "1", "86400")
    assert d["batch_extra_submit_args"] == "--nodes=1 --ntasks-per-node=1 --cpus-per-task=1"
    assert "batch_project" not in d and "batch_queue" not in d and "request_memory" not in d


def test_two_node_slurm_entry_renders_its_shape_account_partition_and_directives() -> None:
    _, d = render_case("batch_slurm_nodes")
    assert (d["batch_queue"], d["batch_project"], d["request_cpus"], d["request_memory"]) == (
        "compute",
        "vo-project",
        "4",
        "8000",
    )
    # 5430 s is 90.5 minutes; the blahp divides by 60, so Updraft rounds up to 91 minutes.
    assert d["batch_runtime"] == "5460"
    assert d["batch_extra_submit_args"] == (
        "--nodes=2 --ntasks-per-node=1 --cpus-per-task=4 --qos=normal --constraint=haswell"
    )
    submit = htcondor2.Submit(d)
    assert submit.get("batch_extra_submit_args") == d["batch_extra_submit_args"]


def test_pilot_identity_is_in_the_environment_with_the_job_id_macro() -> None:
    _, d = render_case("condor")
    assert d["environment"] == (
        '"UPDRAFT_FACTORY=lab-factory UPDRAFT_ENTRY=site1 UPDRAFT_FRONTEND=lab-vo UPDRAFT_GROUP=main '
        "UPDRAFT_SECURITY_CLASS=pilot UPDRAFT_CREDENTIAL_ID=lab-vo.main.token1 UPDRAFT_JOB_ID=$(Cluster).$(Process) "
        "GLIDEIN_Site='Site 1' GLIDEIN_Debug=true GLIDEIN_MaxMemMBs=8000\""
    )
    assert htcondor2.Submit(d).expand("environment").count("UPDRAFT_JOB_ID=1.0") == 1


def test_ec2_user_data_carries_the_identity_as_a_query_string_and_credentials_as_paths() -> None:
    _, d = render_case("ec2")
    assert (d["ec2_ami_id"], d["ec2_instance_type"], d["ec2_keypair"], d["ec2_availability_zone"]) == (
        "ami-0abc1234",
        "m5.xlarge",
        "updraft-ops",
        "us-east-1b",
    )
    assert (d["ec2_access_key_id"], d["ec2_secret_access_key"]) == (
        "/etc/updraft/ec2/access.key",
        "/etc/updraft/ec2/secret.key",
    )
    pairs = parse_qsl(d["ec2_user_data"], strict_parsing=True)
    data = dict(pairs)
    assert pairs[0] == ("UPDRAFT_USER_DATA", "1")
    assert data["UPDRAFT_ENTRY"] == "aws" and data["UPDRAFT_JOB_ID"] == "$(Cluster).$(Process)"
    assert (data["GLIDEIN_Site"], data["GLIDEIN_Spot"]) == ("AWS us-east-1", "false")
    assert (data["UPDRAFT_VM_MANIFEST_URL"], data["UPDRAFT_VM_MANIFEST_SHA256"]) == VM_MANIFEST
    assert data["UPDRAFT_VM_GLIDEIN"] == "glidein_startup.sh"
    assert [value for name, value in pairs if name == "UPDRAFT_VM_ARG"] == list(CLOUD["arguments"])
    assert d["ec2_user_data_file"] == str(CLOUD["user_data_file"])
    assert (d["should_transfer_files"], d["transfer_executable"]) == ("NO", "false")
    assert "output" not in d and "arguments" not in d and "transfer_input_files" not in d


def test_ec2_instances_carry_the_factory_tags_then_the_entry_groups_and_spot_price() -> None:
    _, d = render_case("ec2")
    submit = htcondor2.Submit(d)
    assert submit.get("ec2_tag_names") == "UpdraftFactory,UpdraftEntry,UpdraftPilot,Project,CostCentre"
    assert (d["ec2_tag_UpdraftFactory"], d["ec2_tag_UpdraftEntry"]) == ("lab-factory", "aws")
    assert submit.expand("ec2_tag_UpdraftPilot") == "1.0"
    assert (d["ec2_tag_Project"], d["ec2_tag_CostCentre"]) == ("vo-compute", "4711")
    assert (d["ec2_security_groups"], d["ec2_spot_price"]) == ("pilots,sg-ssh", "0.085")
    assert dict(parse_qsl(submit.expand("ec2_user_data")))["UPDRAFT_JOB_ID"] == "1.0"


def test_a_cloud_pilot_without_a_staging_release_is_refused() -> None:
    entry = FACTORY.entries["aws"]
    with pytest.raises(RenderError, match=r"pilot\.vm_manifest: ec2 pilots boot from the factory's staging area"):
        render_submit(FACTORY, "aws", entry, pilot_for("aws", vm_manifest=None))


def test_a_cloud_pilot_gets_its_token_through_user_data_never_as_a_file() -> None:
    entry = FACTORY.entries["aws"]
    with pytest.raises(RenderError, match="their token travels in user data"):
        render_submit(FACTORY, "aws", entry, pilot_for("aws", **CLOUD, pilot_token_file=Path("/t/x.token")))
    with pytest.raises(RenderError, match=r"pilot\.user_data_file: condor pilots take no user data"):
        render_submit(
            FACTORY, "site2", FACTORY.entries["site2"], pilot_for("site2", **TOKEN, user_data_file=Path("/u"))
        )


def test_gce_metadata_carries_the_same_user_data_as_ec2_in_one_item() -> None:
    _, d = render_case("gce")
    assert (d["gce_image"], d["gce_machine_type"], d["gce_auth_file"]) == (
        "updraft-pilot-image",
        "n2-standard-4",
        "/etc/updraft/gce/auth.json",
    )
    name, _, query = d["gce_metadata"].partition("=")
    assert name == "updraft-user-data" and "," not in query
    _, ec2 = render_case("ec2")
    gce_pairs, ec2_pairs = parse_qsl(query, strict_parsing=True), parse_qsl(ec2["ec2_user_data"])
    assert dict(gce_pairs)["GLIDEIN_Site"] == "GCE, central"
    ours = ("UPDRAFT_",)  # one format: the same reserved pairs in the same order (the entries' attributes differ)
    assert [n for n, _ in gce_pairs if n.startswith(ours)] == [n for n, _ in ec2_pairs if n.startswith(ours)]
    assert d["gce_metadata_file"] == str(CLOUD["user_data_file"])


def test_arc_gets_runtime_environments_resources_and_queue() -> None:
    _, d = render_case("arc")
    assert d["arc_rte"] == "ENV/PROXY USE_DELEGATION_DB,ENV/GLITE"
    assert d["arc_resources"] == "<NetworkInfo>gigabitethernet</NetworkInfo>"
    assert (d["request_cpus"], d["request_memory"], d["batch_queue"]) == ("8", "16000", "grid")
    assert d["x509userproxy"] == "/var/lib/updraft/factory/creds/lab-vo.main.proxy"


def test_shipped_config_entries_render() -> None:
    config = load_factory_config(REPO / "etc" / "factory.yaml", on_warning=lambda _: None).config
    assert config.entries
    for name, entry in config.entries.items():
        description = render_submit(config, name, entry, pilot_for(name, **TOKEN))
        assert description["grid_resource"] == entry.grid_resource
        htcondor2.Submit(description)


# --------------------------------------------------------------------------
# Templates: a missing variable is an error
# --------------------------------------------------------------------------


def test_a_missing_template_variable_raises_instead_of_rendering_empty() -> None:
    env = submit_templates()
    with pytest.raises(jinja2.UndefinedError, match="nowhere"):
        env.from_string("grid_resource = {{ nowhere }}\n").render()
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("x = {{ entry.cloud.image }}\n").render(entry=FACTORY.entries["site1"])


@pytest.mark.parametrize("grid_type", ["condor", "arc", "batch", "ec2", "gce"])
def test_every_template_refuses_an_incomplete_context(grid_type: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        submit_templates().get_template(f"{grid_type}.sub.j2").render(template_name="t")


def test_a_value_that_is_not_text_or_a_number_is_refused() -> None:
    with pytest.raises(RenderError, match="NoneType"):
        submit_templates().from_string("x = {{ value }}\n").render(value=None)


# --------------------------------------------------------------------------
# Quoting: no value leaves its quotes or becomes another command
# --------------------------------------------------------------------------


def test_double_quotes_and_backslashes_stay_inside_classad_strings() -> None:
    pilot = pilot_for("site2", frontend='vo "one" \\ two', group='g"', **TOKEN)
    description = render_submit(FACTORY, "site2", FACTORY.entries["site2"], pilot)
    assert description["+UpdraftFrontend"] == r'"vo \"one\" \\ two"'
    submit = htcondor2.Submit(description)
    assert classad_value(submit, "UpdraftFrontend") == 'vo "one" \\ two'
    assert classad_value(submit, "UpdraftGroup") == 'g"'
    assert 'UPDRAFT_FRONTEND=\'vo ""one"" \\ two\'' in description["environment"]


def test_dollar_signs_cannot_expand_submit_macros() -> None:
    pilot = pilot_for("site2", credential_id="a$(HOME)b$$(Memory)", **TOKEN)
    description = render_submit(FACTORY, "site2", FACTORY.entries["site2"], pilot)
    assert classad_value(htcondor2.Submit(description), "UpdraftCredentialId") == "a$(HOME)b$$(Memory)"
    assert "UPDRAFT_CREDENTIAL_ID=a$(DOLLAR)(HOME)b$$(Memory)" in description["environment"]


@pytest.mark.parametrize("dollars", range(1, 6))
@pytest.mark.parametrize("after", ["", "(x)", "ENV(HOME)", "RANDOM_INTEGER(1,5)", "(DOLLAR)", " x"])
def test_any_run_of_dollars_reads_back_as_written(dollars: int, after: str) -> None:
    value = f"a{'$' * dollars}{after}"
    if dollars % 2 and after == "(DOLLAR)":  # HTCondor would expand it whatever we write
        with pytest.raises(RenderError, match=r"a literal '[$][(]DOLLAR[)]' cannot be written"):
            classad_literal(value)
        return
    description = {"executable": "/bin/true", "+A": classad_literal(value)}
    assert classad_value(htcondor2.Submit(description), "A") == value


@pytest.mark.parametrize(
    "field, value",
    [
        ("frontend", "vo\nuniverse = vanilla"),
        ("group", "main\r"),
        ("credential_id", "c\u2028d"),
        ("work_dir", Path("/var/lib/x\ny")),
    ],
)
def test_a_line_break_in_a_pilot_value_is_refused_naming_the_field(field: str, value: Any) -> None:
    pilot = dataclasses.replace(PILOT, **TOKEN, **{field: value})
    with pytest.raises(RenderError, match=rf"^pilot\.{field}: contains a line break"):
        render_submit(FACTORY, "site2", FACTORY.entries["site2"], pilot)


def test_a_line_break_in_an_argument_names_its_position() -> None:
    pilot = pilot_for("site2", arguments=("-v", "two\nlines"), **TOKEN)
    with pytest.raises(RenderError, match=r"^pilot\.arguments\[1\]: contains a line break"):
        render_submit(FACTORY, "site2", FACTORY.entries["site2"], pilot)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"resource": "ce@x h:1\nuniverse = vanilla"}, "resource"),
        ({"pilot_attributes": {"GLIDEIN_Site": "a\nb"}}, "pilot_attributes.GLIDEIN_Site"),
    ],
)
def test_a_line_break_in_an_entry_value_is_refused_when_the_entry_loads(changes: dict, field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Entry.model_validate({"grid_type": "condor", "resource": "ce@x h:1", **changes})
    assert [(".".join(map(str, e["loc"])), e["type"]) for e in caught.value.errors()] == [(field, "line_break")]
    assert "contains a line break, which would end the submit command" in str(caught.value)


@pytest.mark.parametrize("changes, field", [({"resource": "ce@x h:1\nuniverse = vanilla"}, "resource")])
def test_a_line_break_in_an_unvalidated_entry_is_still_refused_at_render(changes: dict, field: str) -> None:
    entry = Entry.model_validate({"grid_type": "condor", "resource": "ce@x h:1"}).model_copy(update=changes)
    with pytest.raises(ConfigError, match=rf"^entries\.site9\.{field}: contains a line break"):
        render_submit(FACTORY, "site9", entry, pilot_for("site9", **TOKEN))


def test_published_attributes_may_hold_line_breaks_they_never_reach_the_description() -> None:
    entry = Entry.model_validate({"grid_type": "condor", "resource": "ce@x h:1", "attributes": {"Note": "a\nb"}})
    assert render_submit(FACTORY, "site9", entry, pilot_for("site9", **TOKEN))["grid_resource"] == "condor ce@x h:1"


def test_arguments_use_the_new_syntax_and_keep_each_argument_whole() -> None:
    assert arguments_value(["-v", "two words", "it's", 'say "hi"', ""]) == (
        "\"-v 'two words' 'it''s' 'say \"\"hi\"\"' ''\""
    )
    assert arguments_value([]) == '""'
    pilot = pilot_for("hpc-slurm", arguments=("-v", "two words"))
    assert render_submit(FACTORY, "hpc-slurm", FACTORY.entries["hpc-slurm"], pilot)["arguments"] == (
        "\"-v 'two words'\""
    )


# --------------------------------------------------------------------------
# The pilot spec
# --------------------------------------------------------------------------


def test_relative_paths_are_refused() -> None:
    with pytest.raises(RenderError, match=r"^pilot\.work_dir: expected an absolute path"):
        render_submit(FACTORY, "site2", FACTORY.entries["site2"], dataclasses.replace(PILOT, work_dir=Path("logs")))


def test_empty_identity_is_refused() -> None:
    with pytest.raises(RenderError, match=r"^pilot\.group: must not be empty"):
        render_submit(FACTORY, "site2", FACTORY.entries["site2"], pilot_for("site2", group="", **TOKEN))


def test_credentials_only_go_where_a_ce_uses_them() -> None:
    with pytest.raises(RenderError, match="batch entries do not use them"):
        render_submit(FACTORY, "hpc-slurm", FACTORY.entries["hpc-slurm"], pilot_for("hpc-slurm", **PROXY))
    with pytest.raises(RenderError, match="an arc CE needs one of them"):
        render_submit(FACTORY, "nordic", FACTORY.entries["nordic"], pilot_for("nordic"))


# --------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------


def test_parser_skips_comments_and_blank_lines_and_keeps_plus_attributes() -> None:
    text = '# header\n\nuniverse = grid\n  +Foo = "a = b"\nperiodic_remove = x == 2\n'
    assert parse_submit(text) == {"universe": "grid", "+Foo": '"a = b"', "periodic_remove": "x == 2"}


@pytest.mark.parametrize(
    "text, problem",
    [
        ("universe = grid\nqueue\n", "line 2: expected 'key = value'"),
        ("bad key = 1\n", "line 1: expected 'key = value'"),
        ("Universe = grid\nuniverse = vanilla\n", r"line 2: universe is set twice \(first on line 1\)"),
    ],
)
def test_parser_refuses_what_is_not_one_command_per_line(text: str, problem: str) -> None:
    with pytest.raises(RenderError, match=problem):
        parse_submit(text)


# --------------------------------------------------------------------------
# Config: settings must fit the entry's grid type
# --------------------------------------------------------------------------


def factory_problem(tree, entry_yaml: str) -> str:
    main = tree.factory(("50-entry.yaml", f"entries:\n  x:\n{entry_yaml}"))
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    return str(caught.value)


def test_batch_entry_without_batch_system_is_a_clear_config_error(tree) -> None:
    message = factory_problem(tree, "    grid_type: batch\n    resource: hpc\n")
    assert "entries.x.batch_system: required for batch entries: one of slurm, pbs, lsf, sge, condor" in message


@pytest.mark.parametrize(
    "setting, message",
    [
        ("batch_system: slurm", "entries.x.batch_system: only for batch entries, not condor"),
        ("ssh_host: u@h", "entries.x.ssh_host: only for batch entries, not condor"),
        ("batch_queue: q", "entries.x.batch_queue: only for batch and arc entries, not condor"),
        ("arc_rte: ENV/PROXY", "entries.x.arc_rte: only for arc entries, not condor"),
        ("cloud: {image: i, instance_type: t}", "entries.x.cloud: only for ec2 and gce entries, not condor"),
        (
            "pilot_attributes: {UPDRAFT_ENTRY: forged}",
            "entries.x.pilot_attributes: UPDRAFT_ENTRY: names starting with UPDRAFT_ are reserved",
        ),
    ],
)
def test_settings_of_another_grid_type_are_refused(tree, setting: str, message: str) -> None:
    assert message in factory_problem(tree, f"    grid_type: condor\n    resource: ce h:1\n    {setting}\n")


def test_ssh_host_must_be_a_login(tree) -> None:
    entry = "    grid_type: batch\n    resource: r\n    batch_system: pbs\n    ssh_host: host\n"
    message = factory_problem(tree, entry)
    assert "entries.x.ssh_host: expected user@host" in message


@pytest.mark.parametrize(
    "grid_type, cloud, message",
    [
        ("gce", "{image: i, instance_type: t, key_name: k}", "key_name not used by gce entries"),
        ("ec2", "{image: i, instance_type: t, auth_file: /a}", "auth_file not used by ec2 entries"),
        ("ec2", "{image: i, instance_type: t, access_key_file: /a}", "access_key_file and secret_key_file go together"),
        ("ec2", "{image: i, instance_type: t, access_key_file: a, secret_key_file: /b}", "expected an absolute path"),
    ],
)
def test_cloud_settings_must_fit_the_provider(tree, grid_type: str, cloud: str, message: str) -> None:
    assert message in factory_problem(tree, f"    grid_type: {grid_type}\n    resource: r\n    cloud: {cloud}\n")


def test_entry_model_errors_are_pydantic_validation_errors() -> None:
    with pytest.raises(pydantic.ValidationError, match="required for batch entries"):
        Entry.model_validate({"grid_type": "batch", "resource": "hpc"})


@pytest.mark.parametrize("grid_type", ["ec2", "gce"])
def test_cloud_entry_without_cloud_settings_does_not_load(grid_type: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=rf"cloud\n  required for {grid_type} entries"):
        Entry.model_validate({"grid_type": grid_type, "resource": "https://x p z"})


@pytest.mark.parametrize(
    "grid_type, resource, expected",
    [
        ("ec2", "https://ec2.example/ extra", "an ec2 resource is the service URL alone"),
        (
            "gce",
            "https://www.googleapis.com/compute/v1 project-only",
            "a gce resource is '<service URL> <project> <zone>'",
        ),
    ],
)
def test_cloud_resource_must_have_the_shape_htcondor_expects(grid_type: str, resource: str, expected: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=rf"resource\n  {re.escape(expected)}"):
        Entry.model_validate(
            {"grid_type": grid_type, "resource": resource, "cloud": {"image": "i", "instance_type": "t"}}
        )


@pytest.mark.parametrize("cpus, expected", [(4, 4), ("auto", 1), (0, 1), (True, 1)])
def test_cpus_per_pilot_comes_from_glidein_cpus(cpus: object, expected: int) -> None:
    entry = Entry.model_validate({"grid_type": "condor", "resource": "r", "attributes": {"GLIDEIN_CPUS": cpus}})
    assert entry.cpus_per_pilot == expected


def test_new_entry_settings_have_defaults_and_serialise(tree) -> None:
    entry = load_factory_config(tree.factory()).config.entries["site1"]
    assert (entry.max_walltime_seconds, entry.memory_mb, dict(entry.pilot_attributes)) == (86400, None, {})
    assert (entry.batch_system, entry.ssh_host, entry.batch_queue, entry.cloud) == (None, None, None, None)
    dumped = FACTORY.model_dump(mode="json")
    assert FactoryConfig.model_validate_json(FACTORY.model_dump_json()) == FACTORY
    assert dumped["entries"]["aws"]["cloud"]["access_key_file"] == "/etc/updraft/ec2/access.key"


# --------------------------------------------------------------------------
# The pilot token: transferred encrypted, named in the environment, never inlined
# --------------------------------------------------------------------------

PILOT_TOKEN_FILE = Path("/var/lib/updraft/factory/credentials/lab-vo/0123456789abcdef0123456789abcdef.token")


@pytest.mark.parametrize("entry_name", ["site1", "nordic", "hpc-slurm", "hpc-remote"])
def test_the_pilot_token_travels_as_an_encrypted_input_file(entry_name: str) -> None:
    credentials = {"site1": TOKEN, "nordic": PROXY}.get(entry_name, {})
    pilot = pilot_for(entry_name, pilot_token_file=PILOT_TOKEN_FILE, **credentials)
    description = render_submit(FACTORY, entry_name, FACTORY.entries[entry_name], pilot)
    assert description["transfer_input_files"] == str(PILOT_TOKEN_FILE)
    assert description["encrypt_input_files"] == str(PILOT_TOKEN_FILE)
    assert f"UPDRAFT_PILOT_TOKEN={PILOT_TOKEN_FILE.name}" in description["environment"]
    htcondor2.Submit(description)  # HTCondor's own parser takes it


@pytest.mark.parametrize("entry_name", ["aws", "google"])
def test_cloud_pilots_cannot_take_a_token_file_and_say_so(entry_name: str) -> None:
    pilot = pilot_for(entry_name, pilot_token_file=PILOT_TOKEN_FILE)
    with pytest.raises(RenderError, match="machine images that get no input files"):
        render_submit(FACTORY, entry_name, FACTORY.entries[entry_name], pilot)


def test_a_relative_token_path_is_refused() -> None:
    with pytest.raises(RenderError, match=r"pilot\.pilot_token_file: expected an absolute path"):
        render_submit(FACTORY, "site1", FACTORY.entries["site1"], pilot_for("site1", pilot_token_file=Path("x.token")))

"""Batch (HPC) entries: what a site needs, validated with its key, and what the blahp is given.

The rendered descriptions of a one-node, a two-node and an ssh Slurm entry
are golden files (test_factory_render.py); here every refusal, the keys the
batch settings fill in for the rest of the factory, the walltime and margin
the glidein is told, and the entry ad frontends read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from updraft.errors import ConfigError
from updraft.factory.advertise import entry_ads
from updraft.factory.config import Entry, FactoryConfig, load_factory_config
from updraft.factory.gridtypes.batch import MAX_CPUS_PER_NODE, MAX_DIRECTIVES, MAX_NODES, BatchSettings
from updraft.factory.pilot_args import glidein_arguments, glidein_environment
from updraft.factory.render import PilotSpec, check_entry, render_submit
from updraft.factory.stage import stage_entries
from updraft.protocol import PilotParams

from .glidein_helpers import dry_run_pilot

PILOT = PilotSpec(
    frontend="vo",
    group="main",
    security_class="pilot",
    credential_id="vo.main.1",
    executable=Path("/usr/libexec/updraft/pilot.sh"),
    work_dir=Path("/var/lib/updraft/hpc"),
)


def batch(system: str = "slurm", /, **keys: object) -> Entry:
    return Entry.model_validate({"grid_type": "batch", "resource": "hpc", "batch_system": system, **keys})


def problems(system: str = "slurm", /, **keys: object) -> dict[str, str]:
    """Each refused key (dotted, relative to the entry) -> its message."""
    with pytest.raises(pydantic.ValidationError) as caught:
        batch(system, **keys)
    return {".".join(map(str, error["loc"])): error["msg"] for error in caught.value.errors()}


def rendered(entry: Entry) -> dict[str, str]:
    factory = FactoryConfig.model_validate({"name": "f", "wms_collector": "h:1", "schedd": "s"})
    return render_submit(factory, "hpc", entry, PILOT)


def option(args: tuple[str, ...], name: str) -> str:
    return args[args.index(name) + 1]


# --------------------------------------------------------------------------
# ssh_host: a login, with or without a port
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "login",
    [
        *("pilots@login.hpc.example.org", "pilots@login.hpc.example.org:2222"),
        *("u@h:1", "u_1@10.0.0.7:65535", "pilot-user@h-1"),
    ],
)
def test_ssh_host_takes_a_login_with_an_optional_port(login: str) -> None:
    assert batch(ssh_host=login).grid_resource == f"batch slurm {login}"


@pytest.mark.parametrize(
    "garbage",
    [
        "host",
        "u@",
        "@h",
        "u@@h",
        "u@h:",
        "u@h:0",
        "u@h:65536",
        "u@h:ssh",
        "u@h b",
        "u@h;rm",
        "u@-h",
        "u@h..x",
        "u@h:22:1",
    ],
)
def test_ssh_host_refuses_what_is_not_a_login(garbage: str) -> None:
    assert problems(ssh_host=garbage)["ssh_host"].startswith("expected user@host or user@host:port")


# --------------------------------------------------------------------------
# directives: extra sbatch options, one per item, none that Updraft sets
# --------------------------------------------------------------------------


def test_directives_follow_the_pilots_shape_on_the_sbatch_line() -> None:
    entry = batch(directives=["--qos=normal", "--exclusive", "--gres=gpu:1", "--mem-bind=local", "--time-min=10"])
    assert rendered(entry)["batch_extra_submit_args"] == (
        "--nodes=1 --ntasks-per-node=1 --cpus-per-task=1 --qos=normal --exclusive --gres=gpu:1 "
        "--mem-bind=local --time-min=10"
    )


@pytest.mark.parametrize(
    "directive, message",
    [
        ("qos=normal", "expected an sbatch option starting with '-'"),
        ("--qos=normal\n#SBATCH --nodes=9", "'\\n' is not allowed"),
        ("--comment=a\\nb", "'\\\\' is not allowed"),
        ("-q normal", "' ' is not allowed"),
        ("--nodelist=n[1-2]", "'[' is not allowed"),
        ("--comment=*", "'*' is not allowed"),
        ('--comment="x"', "'\"' is not allowed"),
        ("--comment=$HOME", "'$' is not allowed"),
        ("--nodes=2", "--nodes: set by Updraft from nodes"),
        ("-N2", "--nodes: set by Updraft from nodes"),
        ("--ntasks=4", "--ntasks: set by Updraft: one task per node"),
        ("--ntasks-per-node=2", "--ntasks-per-node: set by Updraft"),
        ("-c4", "--cpus-per-task: set by Updraft from cpus_per_node"),
        ("--time=60", "--time: set by Updraft from walltime_seconds"),
        ("-t60", "--time: set by Updraft from walltime_seconds"),
        ("--partition=debug", "--partition: set by Updraft from partition"),
        ("--part=debug", "--partition: set by Updraft from partition"),
        ("-pdebug", "--partition: set by Updraft from partition"),
        ("--account=vo", "--account: set by Updraft from account"),
        ("-Avo", "--account: set by Updraft from account"),
        ("--mem=4000", "--mem: set by Updraft from memory_mb_per_node"),
        ("--mem-per-cpu=1000", "memory is set by Updraft from memory_mb_per_node"),
        ("--output=/tmp/x", "--output: set by the blahp"),
        ("--array=1-4", "a pilot is one Slurm job"),
        ("--parsable", "the blahp reads the job id"),
        ("--wait", "--wait: the blahp would wait"),
    ],
)
def test_a_directive_updraft_or_the_blahp_owns_or_cannot_write_is_refused_at_its_item(
    directive: str, message: str
) -> None:
    found = problems(directives=["--qos=normal", directive])
    assert list(found) == ["directives.1"], found
    assert message in found["directives.1"]


def test_a_directive_in_settings_built_without_validation_is_still_refused_before_rendering() -> None:
    grid = BatchSettings.model_construct(batch_system="slurm", directives=("--qos=x", "--comment=a\\nb"))
    entry = batch().model_copy(update={"grid": grid})
    with pytest.raises(ConfigError, match=r"entries\.hpc\.directives\.1: '\\\\' is not allowed"):
        check_entry("hpc", entry)


def test_directives_are_bounded() -> None:
    assert "at most" in problems(directives=["--exclusive"] * (MAX_DIRECTIVES + 1))["directives"]
    assert "at most" in problems(directives=["--comment=" + "x" * 300])["directives.0"]


# --------------------------------------------------------------------------
# What each batch system can take through the blahp
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system, keys, key, message",
    [
        ("pbs", {"nodes": 2}, "nodes", "the blahp passes it for slurm only, not pbs"),
        ("lsf", {"directives": ["--qos=x"]}, "directives", "for slurm only, not lsf"),
        ("condor", {"account": "vo"}, "account", "for slurm, pbs, lsf and sge only, not condor"),
        ("lsf", {"memory_mb_per_node": 1000}, "memory_mb_per_node", "for slurm, pbs and condor only, not lsf"),
        ("sge", {"memory_mb_per_node": 1000}, "memory_mb_per_node", "not sge"),
        (
            "pbs",
            {"attributes": {"GLIDEIN_Nodes": 2}},
            "batch_system",
            "but attributes.GLIDEIN_Nodes is 2, not 1: the blahp passes no node count for pbs",
        ),
    ],
)
def test_a_key_the_batch_system_would_not_get_is_refused(system: str, keys: dict, key: str, message: str) -> None:
    assert message in problems(system, **keys)[key]


@pytest.mark.parametrize(
    "system, minutes",
    [("slurm", True), ("lsf", True), ("pbs", False), ("sge", False), ("condor", False)],
)
def test_the_walltime_is_rounded_up_to_minutes_where_the_blahp_divides_by_60(system: str, minutes: bool) -> None:
    d = rendered(batch(system, walltime_seconds=3601))
    assert d["batch_runtime"] == ("3660" if minutes else "3601")
    assert d["periodic_remove"].endswith("> 3601")


def test_one_node_pbs_entry_keeps_todays_commands() -> None:
    d = rendered(batch("pbs", partition="short", account="vo", memory_mb_per_node=2000))
    assert (d["batch_queue"], d["batch_project"], d["request_memory"], d["request_cpus"]) == (
        "short",
        "vo",
        "2000",
        "1",
    )
    assert "batch_extra_submit_args" not in d


# --------------------------------------------------------------------------
# partition, and the old batch_queue
# --------------------------------------------------------------------------


def test_batch_queue_still_names_the_partition_when_partition_is_unset() -> None:
    assert rendered(batch(batch_queue="debug"))["batch_queue"] == "debug"
    assert rendered(batch(partition="compute"))["batch_queue"] == "compute"


def test_partition_and_batch_queue_together_are_refused() -> None:
    assert problems(partition="a", batch_queue="b") == {"batch_queue": "the old name of partition: set partition only"}


@pytest.mark.parametrize("key", ["partition", "batch_queue", "account"])
@pytest.mark.parametrize("value", [" ", "", "a b", "a\nb", "$USER", "a\\b", "a'b", "x#y", "é"])
def test_a_partition_or_account_that_is_not_one_plain_word_is_refused(key: str, value: str) -> None:
    assert problems(**{key: value})[key].startswith("expected one word of letters, digits")


@pytest.mark.parametrize("value", ["compute", "a,b", "debug@cluster1", "q@pbs.example.org", "schedd/pool:9618"])
def test_partitions_queues_and_schedds_in_their_usual_spellings_load(value: str) -> None:
    assert batch(partition=value).setting("queue") == value


# --------------------------------------------------------------------------
# Keys that say what a pilot brings: one value, the common key's
# --------------------------------------------------------------------------


def test_the_pilots_shape_fills_in_what_the_factory_and_frontends_read() -> None:
    entry = batch(nodes=2, cpus_per_node=8, memory_mb_per_node=16000, walltime_seconds=7200)
    assert dict(entry.attributes) == {"GLIDEIN_Nodes": 2, "GLIDEIN_CPUS": 8, "GLIDEIN_MaxMemMBs": 16000}
    assert (entry.cpus_per_pilot, entry.memory_mb, entry.max_walltime_seconds) == (8, 16000, 7200)


def test_both_keys_set_alike_load_and_a_lower_advertised_memory_is_kept() -> None:
    entry = batch(
        nodes=2,
        cpus_per_node=8,
        memory_mb_per_node=16000,
        memory_mb=16000,
        walltime_seconds=7200,
        max_walltime_seconds=7200,
        attributes={"GLIDEIN_CPUS": 8, "GLIDEIN_Nodes": 2, "GLIDEIN_MaxMemMBs": 15000},
    )
    assert (entry.attributes["GLIDEIN_MaxMemMBs"], entry.memory_mb) == (15000, 16000)


@pytest.mark.parametrize(
    "keys, key, message",
    [
        (
            {"cpus_per_node": 8, "attributes": {"GLIDEIN_CPUS": 4}},
            "cpus_per_node",
            "8 here, but attributes.GLIDEIN_CPUS is 4, not 8: frontends size their requests by GLIDEIN_CPUS",
        ),
        (
            {"cpus_per_node": 8, "attributes": {"GLIDEIN_CPUS": "auto"}},
            "cpus_per_node",
            "attributes.GLIDEIN_CPUS is 'auto', not 8",
        ),
        (
            {"nodes": 2, "attributes": {"GLIDEIN_Nodes": 3}},
            "nodes",
            "2 here, but attributes.GLIDEIN_Nodes is 3, not 2: frontends count a pilot as GLIDEIN_Nodes nodes",
        ),
        (
            {"memory_mb_per_node": 4000, "memory_mb": 8000},
            "memory_mb_per_node",
            "4000 here, but memory_mb is 8000, not 4000",
        ),
        (
            {"memory_mb_per_node": 4000, "attributes": {"GLIDEIN_MaxMemMBs": 5000}},
            "memory_mb_per_node",
            "attributes.GLIDEIN_MaxMemMBs is 5000, more than 4000: frontends would send jobs that do not fit",
        ),
        (
            {"walltime_seconds": 3600, "max_walltime_seconds": 7200},
            "walltime_seconds",
            "3600 here, but max_walltime_seconds is 7200, not 3600",
        ),
    ],
)
def test_a_disagreement_with_the_common_key_is_refused_naming_both(keys: dict, key: str, message: str) -> None:
    found = problems(**keys)
    assert message in found[key] and "set one of the two, or both alike" in found[key], found


@pytest.mark.parametrize(
    "key, value", [("nodes", MAX_NODES + 1), ("cpus_per_node", MAX_CPUS_PER_NODE + 1), ("nodes", 0)]
)
def test_the_pilots_shape_is_bounded(key: str, value: int) -> None:
    assert key in problems(**{key: value})


def test_the_entry_ad_advertises_the_shape_the_batch_job_gets() -> None:
    config = FactoryConfig.model_validate(
        {
            "name": "f",
            "wms_collector": "h:1",
            "schedd": "s",
            "entries": {
                "hpc": {
                    "grid_type": "batch",
                    "resource": "r",
                    "batch_system": "slurm",
                    "nodes": 2,
                    "cpus_per_node": 4,
                    "memory_mb_per_node": 8000,
                }
            },
        }
    )
    (ad,) = entry_ads(config)
    assert (ad["GLIDEIN_CPUS"], ad["GLIDEIN_Nodes"], ad["GLIDEIN_MaxMemMBs"]) == (4, 2, 8000)
    assert FactoryConfig.model_validate_json(config.model_dump_json()) == config


# --------------------------------------------------------------------------
# The pilot's lifetime inside the walltime
# --------------------------------------------------------------------------


def test_the_glidein_is_told_the_walltime_less_the_margin() -> None:
    entry = batch(nodes=2, walltime_seconds=3600, lifetime_margin_seconds=300)
    args = glidein_arguments(entry, None, PilotParams(collector="vo:9618"))
    assert (option(args, "--max-walltime"), option(args, "--nodes")) == ("3300", "2")
    assert rendered(entry)["batch_runtime"] == "3600"


def test_the_pilot_is_told_the_shape_it_advertises() -> None:
    entry = batch(nodes=2, cpus_per_node=4, memory_mb_per_node=8000)
    env = dict(glidein_environment(entry, PilotParams(collector="vo:9618")))
    assert (env["GLIDEIN_Nodes"], env["GLIDEIN_CPUS"], env["GLIDEIN_MaxMemMBs"]) == (2, 4, 8000)


def test_the_margin_defaults_to_two_minutes_and_other_grid_types_have_none() -> None:
    assert batch(walltime_seconds=3600).pilot_walltime_seconds == 3480
    condor = Entry.model_validate({"grid_type": "condor", "resource": "ce h:1", "max_walltime_seconds": 3600})
    assert condor.pilot_walltime_seconds == 3600


def test_a_margin_not_below_the_walltime_is_refused() -> None:
    assert problems(walltime_seconds=600, lifetime_margin_seconds=600) == {
        "lifetime_margin_seconds": "must be less than the walltime, max_walltime_seconds (600): "
        "the pilot would get no time"
    }


def test_a_walltime_the_glideins_shutdown_margin_would_use_up_is_refused() -> None:
    found = problems(walltime_seconds=600, lifetime_margin_seconds=120, glidein={"shutdown_margin_seconds": 480})
    assert found == {
        "glidein.shutdown_margin_seconds": "must be less than the glidein's walltime, 480 s "
        "(max_walltime_seconds 600 less lifetime_margin_seconds (120)): the glidein would stop before it starts"
    }
    with pytest.raises(pydantic.ValidationError, match=r"glidein's walltime, 300 s \(max_walltime_seconds 300\)"):
        Entry.model_validate({"grid_type": "condor", "resource": "ce h:1", "max_walltime_seconds": 300})


# --------------------------------------------------------------------------
# Through the loader: file and key
# --------------------------------------------------------------------------


def test_the_loader_names_the_file_and_key_of_each_batch_problem(tree) -> None:
    main = tree.factory(
        (
            "50-hpc.yaml",
            """\
            entries:
              hpc:
                grid_type: batch
                resource: slurm here
                batch_system: slurm
                partition: compute
                batch_queue: compute
                cpus_per_node: 8
                attributes: {GLIDEIN_CPUS: 4}
              hpc2:
                grid_type: batch
                resource: slurm here
                batch_system: slurm
                directives: ["--qos=normal", "--time=60"]
            """,
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_factory_config(main)
    file = main.parent / "factory.d" / "50-hpc.yaml"
    message = str(caught.value)
    assert f"{file}: entries.hpc2.directives[1]: --time: set by Updraft from walltime_seconds" in message
    assert f"{file}: entries.hpc.cpus_per_node: 8 here, but attributes.GLIDEIN_CPUS is 4" in message
    assert f"{file}: entries.hpc.batch_queue: the old name of partition: set partition only" in message


def test_a_two_node_slurm_entry_loads_from_yaml(tree) -> None:
    main = tree.factory(
        (
            "50-hpc.yaml",
            """\
            entries:
              hpc:
                grid_type: batch
                resource: slurm over ssh
                batch_system: slurm
                ssh_host: pilots@login.example.org:2222
                partition: compute
                account: vo-project
                walltime_seconds: 7200
                nodes: 2
                cpus_per_node: 2
                memory_mb_per_node: 1500
                directives: [--qos=normal]
            """,
        )
    )
    entry = load_factory_config(main).config.entries["hpc"]
    d = rendered(entry)
    assert d["grid_resource"] == "batch slurm pilots@login.example.org:2222"
    assert d["batch_extra_submit_args"] == "--nodes=2 --ntasks-per-node=1 --cpus-per-task=2 --qos=normal"
    assert (d["batch_queue"], d["batch_project"], d["batch_runtime"], d["request_memory"]) == (
        "compute",
        "vo-project",
        "7200",
        "1500",
    )


def test_the_commented_hpc_examples_in_etc_load_when_uncommented(tree) -> None:
    """etc/factory.d/10-example-sites.yaml shows a local and an ssh Slurm entry in comments;
    uncommented, they must load and render what their comments say."""
    example = (Path(__file__).resolve().parents[2] / "etc" / "factory.d" / "10-example-sites.yaml").read_text()
    hpc = example[example.index("  # hpc-local:") :]
    kept = [line[4:] for line in hpc.splitlines() if re.match(r"  # (hpc-[a-z]+:$|  )", line)]
    main = tree.factory(("50-hpc.yaml", "entries:\n" + "\n".join(f"  {line}" for line in kept) + "\n"))
    entries = load_factory_config(main).config.entries
    assert {"hpc-local", "hpc-login"} <= set(entries)
    login = rendered(entries["hpc-login"])
    assert login["grid_resource"] == "batch slurm pilots@login.hpc.example.org:2222"
    assert login["batch_extra_submit_args"] == (
        "--nodes=2 --ntasks-per-node=1 --cpus-per-task=16 --qos=normal --constraint=haswell"
    )
    assert rendered(entries["hpc-local"])["batch_extra_submit_args"] == (
        "--nodes=1 --ntasks-per-node=1 --cpus-per-task=8"
    )


def test_the_real_glidein_dies_the_margin_and_its_shutdown_margin_before_the_walltime(tmp_path: Path, web: str) -> None:
    """Through glidein_startup.sh (dry run): KILL comes at walltime - margin, TERM a shutdown margin earlier."""
    check = tmp_path / "check.sh"
    check.write_text("#!/bin/sh\nexit 0\n")
    hpc = {
        "grid_type": "batch",
        "resource": "hpc",
        "batch_system": "slurm",
        "walltime_seconds": 3600,
        "lifetime_margin_seconds": 300,
        "cpus_per_node": 2,
        "glidein": {"shutdown_margin_seconds": 60, "failure_sleep_seconds": 0},
    }
    config = FactoryConfig.model_validate(
        {
            "name": "fac",
            "wms_collector": "127.0.0.1:9619",
            "schedd": "s@x",
            "staging": {
                "dir": str(tmp_path / "area"),
                "url": web,
                "files": [{"source": str(check), "kind": "validate"}],
            },
            "entries": {"hpc": hpc},
        }
    )
    entry = config.entries["hpc"]
    params = PilotParams(collector="127.0.0.1:29618")
    args = glidein_arguments(entry, stage_entries(config)["hpc"], params)
    report = dry_run_pilot(tmp_path, args, dict(glidein_environment(entry, params)))
    assert report.start_time is not None and report.die_time is not None
    assert report.die_time - report.start_time == 3600 - 300 - 60
    assert report.cpus == 2

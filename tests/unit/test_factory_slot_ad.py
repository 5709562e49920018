"""The prospective slot in the entry ad (``UpdraftSlot_*``): derived from the config as the glidein
will really configure its startd, for entries and entry sets, and the ``slot:`` key's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from updraft import protocol
from updraft.factory.advertise import entry_ads
from updraft.factory.config import FactoryConfig
from updraft.factory.pilot_args import glidein_arguments
from updraft.factory.slotad import member_slot, pilot_domains
from updraft.protocol import PilotParams

from .test_config import factory_error

CE = {"grid_type": "condor", "resource": "ce x:1"}


def factory(entries: dict[str, Any], **top: Any) -> FactoryConfig:
    return FactoryConfig.model_validate(
        {"name": "fac", "wms_collector": "127.0.0.1:9619", "schedd": "s@x", "entries": entries, **top}
    )


def slot_of(config: FactoryConfig, name: str) -> dict[str, Any]:
    """The prospective slot the frontend reads from the advertised entry `name`."""
    (ad,) = [ad for ad in entry_ads(config) if ad[protocol.E_ENTRY] == name]
    assert all(key in protocol.SLOT_PROJECTION for key in ad if key.startswith(protocol.E_SLOT_PREFIX)), ad
    return protocol.prospective_slot(ad)


def test_an_entry_announces_cores_memory_domains_and_what_its_startd_publishes() -> None:
    config = factory(
        {
            "site1": {
                **CE,
                "attributes": {"GLIDEIN_Site": "Site1", "GLIDEIN_CPUS": 4, "GLIDEIN_Supported_VOs": "vo"},
                "memory_mb": 8000,
                "max_walltime_seconds": 7200,
                "glidein": {"max_idle_seconds": 600, "idle_tail_seconds": 60},
            }
        }
    )
    assert slot_of(config, "site1") == {
        "Cpus": 4,
        "TotalCpus": 4,
        "Memory": 8000,
        "FileSystemDomain": "site1.fac.updraft.invalid",
        "UidDomain": "site1.fac.updraft.invalid",
        "HasFileTransfer": True,
        "IS_GLIDEIN": True,
        "GLIDEIN_Site": "Site1",
        "GLIDEIN_Entry_Name": "site1",
        "GLIDEIN_Factory": "fac",
        "GLIDEIN_Name": "fac",
        "GLIDEIN_Max_Walltime": 7200,
        "GLIDEIN_Max_Idle": 600,
        "GLIDEIN_Max_Tail": 60,
    }


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, {}),  # the glidein counts the worker's cores; HTCondor measures its memory
        ({"attributes": {"GLIDEIN_CPUS": "auto"}}, {}),
        ({"attributes": {"GLIDEIN_CPUS": "8"}}, {"Cpus": 8, "TotalCpus": 8}),  # the glidein reads text
        ({"memory_mb": 3000}, {"Memory": 3000}),
        ({"memory_mb": 3000, "attributes": {"GLIDEIN_MaxMemMBs": 2000}}, {"Memory": 2000}),
        ({"memory_mb": 3000, "pilot_attributes": {"GLIDEIN_MaxMemMBs": 2500}}, {"Memory": 2500}),
        (
            {"attributes": {"GLIDEIN_CPUS": 4, "GLIDEIN_MaxMemMBs": 8002}, "glidein": {"slots_layout": "fixed"}},
            {"Cpus": 1, "TotalCpus": 4, "Memory": 2000},
        ),
        ({"memory_mb": 8000, "glidein": {"slots_layout": "fixed"}}, {}),  # shared by an unknown count of slots
    ],
)
def test_cores_and_memory_are_announced_only_when_the_glidein_is_told_them(settings: dict, expected: dict) -> None:
    slot = slot_of(factory({"e": {**CE, **settings}}), "e")
    assert {name: slot[name] for name in ("Cpus", "TotalCpus", "Memory") if name in slot} == expected


def test_a_batch_entry_announces_its_nodes_cores_and_memory_per_node() -> None:
    config = factory(
        {
            "hpc": {
                "grid_type": "batch",
                "resource": "slurm@hpc",
                "batch_system": "slurm",
                "nodes": 2,
                "cpus_per_node": 16,
                "memory_mb_per_node": 64000,
                "glidein": {"node_launcher": "srun"},
            }
        }
    )
    slot = slot_of(config, "hpc")
    assert (slot["Cpus"], slot["Memory"], slot["GLIDEIN_Nodes"]) == (16, 64000, 2)


def test_the_operators_slot_settings_are_announced_in_htcondor_units() -> None:
    config = factory(
        {
            "e": {
                **CE,
                "slot": {
                    "disk_mb": 20000,
                    "arch": "X86_64",
                    "opsys": "LINUX",
                    "opsys_and_ver": "AlmaLinux9",
                    "opsys_major_ver": 9,
                    "filesystem_domain": "cluster.site.org",
                    "uid_domain": "site.org",
                },
                "attributes": {"GLIDEIN_Schedd": "s@h"},
                "glidein": {"blackhole_jobs": 5, "blackhole_window_seconds": 120},
            }
        }
    )
    slot = slot_of(config, "e")
    assert {k: slot[k] for k in ("Disk", "Arch", "OpSys", "OpSysAndVer", "OpSysMajorVer")} == {
        "Disk": 20000 * 1024,
        "Arch": "X86_64",
        "OpSys": "LINUX",
        "OpSysAndVer": "AlmaLinux9",
        "OpSysMajorVer": 9,
    }
    assert (slot["FileSystemDomain"], slot["UidDomain"]) == ("cluster.site.org", "site.org")
    assert (slot["GLIDEIN_Schedd"], slot["GLIDEIN_BlackHole_Jobs"], slot["GLIDEIN_BlackHole_Window"]) == ("s@h", 5, 120)
    assert not {"Disk", "Arch", "OpSys", "GLIDEIN_Schedd", "GLIDEIN_BlackHole_Jobs"} & set(
        slot_of(factory({"e": CE}), "e")
    )


def test_the_pilot_attributes_win_as_they_do_in_the_pilots_environment() -> None:
    config = factory(
        {
            "e": {
                **CE,
                "attributes": {"GLIDEIN_Site": "A"},
                "pilot_attributes": {"GLIDEIN_Site": "B", "GLIDEIN_Name": "n"},
            }
        }
    )
    slot = slot_of(config, "e")
    assert (slot["GLIDEIN_Site"], slot["GLIDEIN_Name"]) == ("B", "n")


def set_factory(**members: dict[str, Any]) -> FactoryConfig:
    return factory(
        {name: {**CE, **settings} for name, settings in members.items()},
        entry_sets={"both": {"members": sorted(members), "attributes": {"GLIDEIN_CPUS": 4}}},
    )


def test_a_set_announces_its_smallest_member_and_only_what_all_members_share() -> None:
    config = set_factory(
        a={"attributes": {"GLIDEIN_CPUS": 4, "GLIDEIN_Site": "S"}, "memory_mb": 8000, "slot": {"arch": "X86_64"}},
        b={
            "attributes": {"GLIDEIN_CPUS": 4, "GLIDEIN_Site": "S"},
            "memory_mb": 6000,
            "slot": {"arch": "aarch64", "opsys": "LINUX"},
            "max_walltime_seconds": 3600,
        },
    )
    slot = slot_of(config, "both")
    assert (slot["Cpus"], slot["Memory"], slot["GLIDEIN_Max_Walltime"]) == (4, 6000, 3600)
    assert (slot["GLIDEIN_Site"], slot["GLIDEIN_Entry_Name"]) == ("S", "both")
    assert slot["FileSystemDomain"] == "both.fac.updraft.invalid"  # the members agree: named by the set
    assert "Arch" not in slot and "OpSys" not in slot


def test_a_set_with_a_member_of_unknown_memory_announces_no_memory() -> None:
    config = set_factory(
        a={"attributes": {"GLIDEIN_CPUS": 4}, "memory_mb": 8000}, b={"attributes": {"GLIDEIN_CPUS": 4}}
    )
    slot = slot_of(config, "both")
    assert "Memory" not in slot and slot["Cpus"] == 4
    assert slot["GLIDEIN_Site"] == "both"  # no GLIDEIN_Site: the glidein writes its entry's name, the set's


def test_the_glidein_is_told_the_domains_the_ad_announces() -> None:
    config = set_factory(a={"attributes": {"GLIDEIN_CPUS": 4}}, b={"attributes": {"GLIDEIN_CPUS": 4}})
    slot = slot_of(config, "both")
    for member in ("a", "b"):
        entry = config.entries[member]
        args = glidein_arguments(entry, None, PilotParams(collector="c:1"), domains=pilot_domains("fac", "both", entry))
        assert args[args.index("--filesystem-domain") + 1] == slot["FileSystemDomain"]
        assert args[args.index("--uid-domain") + 1] == slot["UidDomain"]
        assert member_slot("fac", "both", entry)["FileSystemDomain"] == slot["FileSystemDomain"]


def test_published_attributes_cannot_forge_the_slot() -> None:
    with pytest.raises(ValueError, match="names starting with UpdraftSlot_ are reserved"):
        factory({"e": {**CE, "attributes": {"UpdraftSlot_Memory": 10**6}}})
    with pytest.raises(ValueError, match="names starting with UpdraftSlot_ are reserved"):
        factory({"e": CE}, entry_sets={"s": {"members": ["e"], "attributes": {"UpdraftSlot_Cpus": 64}}})


@pytest.mark.parametrize(
    ("slot", "key", "expected"),
    [
        ("{filesystem_domain: 'a b'}", "slot.filesystem_domain", "expected a domain name"),
        ("{uid_domain: .lab}", "slot.uid_domain", "expected a domain name"),
        ("{arch: 'x86 64'}", "slot.arch", "expected one word as HTCondor writes it"),
        ("{disk_mb: 0}", "slot.disk_mb", "greater than or equal to 1"),
        ("{opsys_major_ver: nine}", "slot.opsys_major_ver", "valid integer"),
        ("{memory: 4}", "slot.memory", "unknown key"),
    ],
)
def test_a_bad_slot_setting_names_the_file_and_the_key(tree, slot: str, key: str, expected: str) -> None:
    main = tree.factory(("10-e.yaml", f"entries: {{e: {{grid_type: condor, resource: 'ce x:1', slot: {slot}}}}}"))
    error = factory_error(main)
    assert f"{main.parent / 'factory.d' / '10-e.yaml'}: entries.e.{key}" in error, error
    assert expected in error, error


def test_the_commented_slot_example_in_etc_loads_and_is_announced_when_uncommented() -> None:
    example = (Path(__file__).resolve().parents[2] / "etc" / "factory.d" / "10-example-sites.yaml").read_text()
    lines = example.splitlines()
    start = lines.index("    # slot:")
    end = next(i for i in range(start, len(lines)) if "staging_files" in lines[i]) - 1
    block = "\n".join(line.replace("# ", "", 1) for line in lines[start:end])
    settings = yaml.safe_load(block)["slot"]
    slot = slot_of(factory({"site1": {**CE, "slot": settings}}), "site1")
    assert (slot["Disk"], slot["OpSysAndVer"], slot["FileSystemDomain"]) == (
        20000 * 1024,
        "AlmaLinux9",
        "submit.vo.example.org",
    )

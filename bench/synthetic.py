"""Seeded, realistic frontend inputs for benchmarks (and for trying the policy by hand).

The shape of the data follows what a large VO pool looks like (numbers are
choices, not measurements; change them here, not in the benchmark):

- **sites**: ``shapes // 5`` sites (at least 4), named ``Site0001``...;
- **entries**: spread round-robin over the sites (``entries / sites`` CEs
  per site, 5 in the standard cases), from two factories. Each has
  ``GLIDEIN_CPUS`` 1, 4 or 8 (30/30/40 %), ``GLIDEIN_MaxMemMBs`` of 2000, 2500
  or 4000 MB per core, ``GLIDEIN_Supported_VOs`` including ``myvo`` for 90 %
  of them, and ordinary bookkeeping attributes the match expression never
  reads. 3 % are in downtime.
- **requirements**: every job carries HTCondor's default Requirements
  (Arch, OpSys, Disk, Memory, file transfer) and entries describe their
  pilots' slots (``UpdraftSlot_*``), so matching evaluates them too; 1 % of
  the shapes ask for 4 TB of memory and 1 % for the submit host's
  filesystem, which no pilot offers.
- **job shapes**: four schedds (or ``schedds``). A shape is a distinct combination of the
  attributes the match expression reads (that is what a shape *is*), per
  schedd: ``RequestCpus`` 1/2/4/8 (60/10/15/15 %), ``RequestMemory`` of 1024,
  2048, 2500 or 4096 MB per core, and ``DESIRED_Sites`` listing 1-4 sites;
  3 % of draws have no ``DESIRED_Sites`` ("run anywhere"), but there are only
  16 such combinations per schedd, so at most 64 of those exist. With
  ``everywhere``, each distinct shape is queued in every schedd (a VO with
  many submit hosts, where users submit the same workflows from each), its
  jobs split evenly.
- **jobs**: ``jobs`` idle jobs spread over the shapes with a heavy tail
  (Pareto weights: a few shapes hold most jobs, as a few users do); 30 % of
  a shape's idle jobs are old idle; running jobs are half the idle ones.
- **pilot slots**: half the entries run pilots, 10 each on average; 80 %
  busy, 15 % idle, 5 % retiring; each lives up to 48 h more.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from updraft.condor import Expression
from updraft.frontend.config import FrontendConfig
from updraft.frontend.model import EntryAd, JobShape, Observation, PilotSlot, SlotState

NOW = 1_700_000_000.0
VO = "myvo"
MATCH_EXPR = (
    "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)"
    f' && stringListMember("{VO}", TARGET.GLIDEIN_Supported_VOs)'
    " && MY.RequestMemory <= TARGET.GLIDEIN_MaxMemMBs"
)
SCHEDDS = ("schedd1@vo", "schedd2@vo", "schedd3@vo", "schedd4@vo")
FACTORIES = ("factory-a", "factory-b")


DEFAULT_REQUIREMENTS = (
    '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk)'
    " && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)"
)
SHARED_FS_REQUIREMENTS = (
    '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk)'
    " && (TARGET.Memory >= RequestMemory) && (TARGET.FileSystemDomain == MY.FileSystemDomain)"
)


@dataclass(frozen=True)
class Scenario:
    """How big the cycle is; the seed makes it the same cycle every run."""

    jobs: int
    shapes: int
    entries: int
    seed: int = 1
    schedds: int = 4
    everywhere: bool = False
    """Every distinct shape in every schedd (`shapes` distinct ones, `shapes` x `schedds` records)."""

    @property
    def sites(self) -> int:
        return max(4, self.shapes // 5)


def site_name(number: int) -> str:
    return f"Site{number:04d}"


def pilot_slot(cpus: int, memory: int) -> dict[str, object]:
    """What an entry advertises of its pilots' slots (`updraft.protocol.E_SLOT_PREFIX`)."""
    slot = {
        "Cpus": cpus,
        "Memory": memory,
        "Disk": 50 * 2**20,
        "Arch": "X86_64",
        "OpSys": "LINUX",
        "HasFileTransfer": True,
        "FileSystemDomain": "pilot.bench.invalid",
    }
    return {f"UpdraftSlot_{name}": value for name, value in slot.items()}


def make_entries(scenario: Scenario, rng: random.Random) -> list[EntryAd]:
    entries = []
    for number in range(scenario.entries):
        site = site_name(number % scenario.sites)
        cpus = rng.choices((1, 4, 8), weights=(30, 30, 40))[0]
        vos = f"{VO},othervo" if rng.random() < 0.9 else "othervo,thirdvo"
        memory = cpus * rng.choice((2000, 2500, 4000))
        attrs = {
            **pilot_slot(cpus, memory),
            "GLIDEIN_Site": site,
            "GLIDEIN_CPUS": cpus,
            "GLIDEIN_MaxMemMBs": memory,
            "GLIDEIN_Supported_VOs": vos,
            "GLIDEIN_GridType": "condor",
            "GLIDEIN_Gatekeeper": f"ce{number}.{site.lower()}.example 9619",
            "GLIDEIN_ResourceName": f"{site}_CE{number // scenario.sites}",
            "GLIDEIN_MaxWalltime": 48 * 3600,
        }
        entries.append(
            EntryAd(
                name=f"{site}_ce{number // scenario.sites}",
                factory=FACTORIES[number % len(FACTORIES)],
                attrs=attrs,
                cpus_per_pilot=cpus,
                max_pilots=rng.choice((0, 200, 1000)),
                max_idle=rng.choice((0, 20, 100)),
                in_downtime=rng.random() < 0.03,
            )
        )
    return entries


def _shape_attrs(scenario: Scenario, rng: random.Random) -> tuple[int, int, str | None]:
    cpus = rng.choices((1, 2, 4, 8), weights=(60, 10, 15, 15))[0]
    memory = cpus * rng.choice((1024, 2048, 2500, 4096))
    if rng.random() < 0.03:
        return cpus, memory, None
    picked = rng.sample(range(scenario.sites), rng.randint(1, min(4, scenario.sites)))
    return cpus, memory, ",".join(site_name(n) for n in picked)


def _job_counts(total: int, buckets: int, rng: random.Random) -> list[int]:
    """Heavy-tailed split of `total` over `buckets` that sums exactly to `total`."""
    weights = [rng.paretovariate(1.2) for _ in range(buckets)]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for position in rng.sample(range(buckets), total - sum(counts)):
        counts[position] += 1
    return counts


def _schedds(scenario: Scenario) -> tuple[str, ...]:
    return SCHEDDS if scenario.schedds == len(SCHEDDS) else tuple(f"schedd{n}@vo" for n in range(scenario.schedds))


def _requirements(cpus: int, memory: int, rng: random.Random) -> tuple[int, dict[str, object]]:
    """The job's Requirements and what they read; 1 % want 4 TB, 1 % the submit host's filesystem."""
    draw = rng.random()
    if draw < 0.01:
        memory = 4_000_000
    text = SHARED_FS_REQUIREMENTS if 0.01 <= draw < 0.02 else DEFAULT_REQUIREMENTS
    return memory, {
        "Requirements": Expression(text),
        "RequestDisk": memory * 1024,
        "FileSystemDomain": "submit.bench.example",
    }


def _shape(schedd: str, cpus: int, memory: int, sites: str | None, idle: int, extra: dict[str, object]) -> JobShape:
    attrs: dict[str, object] = {"RequestCpus": cpus, "RequestMemory": memory, **extra}
    if sites is not None:
        attrs["DESIRED_Sites"] = sites
    return JobShape(
        group="main",
        schedd=schedd,
        attrs=attrs,
        idle=idle,
        old_idle=int(idle * 0.3),
        running=idle // 2,
        cpus=cpus,
        memory_mb=memory,
    )


def make_shapes(scenario: Scenario, rng: random.Random) -> list[JobShape]:
    schedds = _schedds(scenario)
    seen: set[tuple[str, int, int, str | None]] = set()
    drawn: list[tuple[str, int, int, str | None]] = []
    while len(drawn) < scenario.shapes:
        schedd = "*" if scenario.everywhere else rng.choice(schedds)
        key = (schedd, *_shape_attrs(scenario, rng))
        if key not in seen:
            seen.add(key)
            drawn.append(key)
    shapes = []
    for (schedd, cpus, memory, sites), idle in zip(
        drawn, _job_counts(scenario.jobs, scenario.shapes, rng), strict=True
    ):
        memory, extra = _requirements(cpus, memory, rng)
        if schedd != "*":
            shapes.append(_shape(schedd, cpus, memory, sites, idle, extra))
            continue
        share, rest = divmod(idle, len(schedds))
        shapes.extend(_shape(name, cpus, memory, sites, share + (i < rest), extra) for i, name in enumerate(schedds))
    return shapes


def make_slots(entries: Sequence[EntryAd], rng: random.Random) -> list[PilotSlot]:
    slots = []
    states = (SlotState.RUNNING, SlotState.IDLE, SlotState.RETIRING)
    for entry in entries:
        if rng.random() < 0.5:
            continue
        memory = int(entry.attrs["GLIDEIN_MaxMemMBs"])
        machine = tuple(
            (name.removeprefix("UpdraftSlot_"), value)
            for name, value in entry.attrs.items()
            if name.startswith("UpdraftSlot_")
        )
        for _ in range(rng.randint(1, 19)):
            state = rng.choices(states, weights=(80, 15, 5))[0]
            slots.append(
                PilotSlot(
                    entry=entry.name,
                    factory=entry.factory,
                    group="main",
                    state=state,
                    cpus=entry.cpus_per_pilot,
                    memory_mb=memory,
                    to_die=NOW + rng.uniform(0, 48 * 3600),
                    machine=machine,
                )
            )
    return slots


def make_observation(scenario: Scenario) -> Observation:
    rng = random.Random(scenario.seed)
    entries = make_entries(scenario, rng)
    slots = make_slots(entries, rng)
    return Observation(
        shapes=tuple(make_shapes(scenario, rng)),
        entries=tuple(entries),
        slots=tuple(slots),
        pool_idle_pilots=sum(1 for s in slots if s.state is SlotState.IDLE),
        pool_running_pilots=len(slots),
    )


def make_config(index: bool = True) -> FrontendConfig:
    """One group using the usual CMS-style site-list match, indexed on the site (unless not `index`)."""
    return FrontendConfig.model_validate(
        {
            "name": "bench-vo",
            "vo_collector": "127.0.0.1:29618",
            "wms_collector": "127.0.0.1:29619",
            "factories": {name: {"identity": f"{name}@bench"} for name in FACTORIES},
            "limits": {"max_idle_pilots": 20_000, "max_running_pilots": 200_000},
            "pool": {"max_idle_pilots": 40_000, "max_running_pilots": 400_000},
            "groups": {
                "main": {
                    "match_expr": MATCH_EXPR,
                    **({"match_index": {"job_attr": "DESIRED_Sites", "entry_attr": "GLIDEIN_Site"}} if index else {}),
                    "limits": {
                        "max_idle_pilots": 10_000,
                        "max_running_pilots": 150_000,
                        "max_idle_per_entry": 50,
                        "max_running_per_entry": 1000,
                    },
                }
            },
        }
    )

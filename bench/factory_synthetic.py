"""Seeded, realistic factory inputs for benchmarks (and for trying the policy by hand).

The shape of the data follows what a busy factory looks like (numbers are
choices, not measurements; change them here, not in the benchmark):

- **frontends**: 8 VOs (``vo1``...), each with 1-3 groups; every entry
  allows 4-8 of them, each with its own identity and security class.
- **entries**: 3 % in downtime; ``max_pilots`` 100-400, ``max_idle``
  20-60, ``max_held`` 10-30; per-cycle caps of 50 submissions, 50 removals,
  20 releases; clusters of 10; stale after 12 h idle, 48 h running, 24 h
  held; holds 12, 13 and 26 are recoverable, up to 3 releases per pilot,
  5 min backoff doubling to 1 h.
- **pilots**: ``pilots`` spread over the entries with a heavy tail (Pareto
  weights: a few big sites hold most pilots) and over the entry's allowed
  (frontend, group) keys; 8 % waiting, 14 % pending, 2 % staging, 68 %
  running, 5 % held (codes 12/13/26/3/34), 3 % completed or removed; about
  2 % of idle and running pilots are stale.
- **requests**: ``requests`` (frontend, group, entry) triples drawn from the
  same keys, so most meet pilots and some keys have pilots but no request;
  idle 0-40, mode none/idle/all (50/35/15 %), 2 % with a wrong identity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from updraft.factory.model import (
    CycleCaps,
    EntryPolicy,
    FrontendAccess,
    HoldPolicy,
    Limits,
    Pilot,
    PilotState,
    Request,
    StaleAges,
)
from updraft.protocol import PilotParams

NOW = 1_700_000_000.0
HOUR = 3600.0
FRONTENDS = tuple(f"vo{n}" for n in range(1, 9))
GROUPS = {vo: tuple(f"g{n}" for n in range(1 + n % 3)) for n, vo in enumerate(FRONTENDS)}
STATES = (
    PilotState.WAITING,
    PilotState.PENDING,
    PilotState.STAGING,
    PilotState.RUNNING,
    PilotState.HELD,
    PilotState.COMPLETED,
    PilotState.REMOVED,
)
STATE_WEIGHTS = (8, 14, 2, 68, 5, 2, 1)
HOLD_CODES = (12, 13, 26, 3, 34)
STALE = StaleAges(idle_seconds=12 * HOUR, running_seconds=48 * HOUR, held_seconds=24 * HOUR)
HOLDS = HoldPolicy(
    recoverable_codes=frozenset({12, 13, 26}), max_releases=3, backoff_seconds=300, max_backoff_seconds=HOUR
)


@dataclass(frozen=True)
class Scenario:
    """How big the cycle is; the seed makes it the same cycle every run."""

    entries: int = 1_000
    pilots: int = 100_000
    requests: int = 2_000
    seed: int = 1


def entry_name(number: int) -> str:
    return f"Site{number // 4:04d}_ce{number % 4}"


def make_policy(name: str, rng: random.Random) -> EntryPolicy:
    allowed = rng.sample(FRONTENDS, rng.randint(4, 8))
    return EntryPolicy(
        name=name,
        limits=Limits(max_pilots=rng.randint(100, 400), max_idle=rng.randint(20, 60), max_held=rng.randint(10, 30)),
        frontend_limits={
            vo: Limits(max_pilots=rng.randint(50, 200), max_idle=rng.randint(10, 30)) for vo in allowed[:2]
        },
        default_frontend_limits=Limits(max_idle=40),
        per_cycle=CycleCaps(max_submits=50, max_removals=50, max_releases=20),
        cluster_size=10,
        stale=STALE,
        holds=HOLDS,
        in_downtime=rng.random() < 0.03,
        frontends={vo: FrontendAccess(f"{vo}@bench", frozenset({f"{vo}-pilot"})) for vo in sorted(allowed)},
    )


def _keys(policy: EntryPolicy) -> list[tuple[str, str]]:
    return [(vo, group) for vo in policy.frontends for group in GROUPS[vo]]


def _age(state: PilotState, rng: random.Random) -> float:
    """Seconds in the state; about 2 % beyond the stale limit."""
    limit = {PilotState.RUNNING: STALE.running_seconds, PilotState.HELD: STALE.held_seconds}.get(
        state, STALE.idle_seconds
    )
    assert limit is not None
    return rng.uniform(limit, 2 * limit) if rng.random() < 0.02 else rng.uniform(0, limit)


def make_pilot(number: int, policy: EntryPolicy, rng: random.Random) -> Pilot:
    vo, group = rng.choice(_keys(policy))
    state = rng.choices(STATES, STATE_WEIGHTS)[0]
    age = _age(state, rng)
    held = state is PilotState.HELD
    return Pilot(
        job_id=f"{number // 10}.{number % 10}",
        entry=policy.name,
        frontend=vo,
        group=group,
        security_class=f"{vo}-pilot",
        credential_id=f"{vo}-cred",
        state=state,
        entered_state=NOW - age,
        submitted=NOW - age - rng.uniform(0, 6 * HOUR),
        hold_code=rng.choice(HOLD_CODES) if held else None,
        hold_subcode=0 if held else None,
        num_holds=rng.randint(1, 4) if held else 0,
        last_hold_time=NOW - age if held else None,
    )


def make_pilots(scenario: Scenario, policies: list[EntryPolicy], rng: random.Random) -> list[Pilot]:
    weights = [rng.paretovariate(1.5) for _ in policies]
    chosen = rng.choices(policies, weights, k=scenario.pilots)
    return [make_pilot(number, policy, rng) for number, policy in enumerate(chosen)]


def make_request(policy: EntryPolicy, key: tuple[str, str], rng: random.Random) -> Request:
    vo, group = key
    identity = f"{vo}@bench" if rng.random() >= 0.02 else "intruder@bench"
    return Request(
        entry=policy.name,
        frontend=vo,
        group=group,
        security_class=f"{vo}-pilot",
        identity=identity,
        idle=rng.randint(0, 40),
        max_pilots=rng.randint(50, 300),
        remove=rng.choices(("none", "idle", "all"), (50, 35, 15))[0],
        remove_max=rng.randint(0, 20),
        pilot=PilotParams(collector=f"{vo}.example.org:9618"),
    )


def make_requests(scenario: Scenario, policies: list[EntryPolicy], rng: random.Random) -> list[Request]:
    keys = [(policy, key) for policy in policies for key in _keys(policy)]
    return [make_request(policy, key, rng) for policy, key in rng.sample(keys, scenario.requests)]


def make_cycle(scenario: Scenario) -> tuple[list[Request], list[Pilot], dict[str, EntryPolicy]]:
    """(requests, pilots, policies by entry name) for one factory cycle."""
    rng = random.Random(scenario.seed)
    policies = [make_policy(entry_name(number), rng) for number in range(scenario.entries)]
    pilots = make_pilots(scenario, policies, rng)
    requests = make_requests(scenario, policies, rng)
    return requests, pilots, {policy.name: policy for policy in policies}

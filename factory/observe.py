"""Observe: the factory's pilots (from its own queue), the requests addressed to it, the
pilots that left the queue since the last cycle (from the schedd's history, with their reports),
and the instances its cloud entries have running (from the EC2 API, `updraft.factory.cloud`).

The queue is the factory's only memory: every pilot carries its entry,
frontend, group, security class and credential id as job attributes, so
a restarted factory rebuilds exactly the view it had. The three reads run
at once through the cycle's ports; a read that fails is a problem of the
cycle and leaves its part unknown (None), never empty. The functions that
turn ads into model objects are pure and tested alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import classad2

from updraft import adread, pilot_ad, protocol, summary
from updraft.condor import Ad
from updraft.errors import CloudError, CondorError
from updraft.factory import completed, holds, policy
from updraft.factory.cloud import AccountRead, CloudAccount, CloudView
from updraft.factory.cloudports import CloudPort
from updraft.factory.config import FactoryConfig
from updraft.factory.model import Pilot, PilotState
from updraft.factory.ports import FactoryPorts
from updraft.pilot_ad import JobStatus, PilotAd

log = logging.getLogger(__name__)

PILOT_PROJECTION = pilot_ad.QUEUE_PROJECTION
_STAGING_WORDS = ("TRANSFER", "STAGE")
_GONE = frozenset({*pilot_ad.FINAL_STATUSES, JobStatus.TRANSFERRING_OUTPUT})
"""Statuses of a pilot whose job is over: it holds no place at the CE any more."""


def pilot_constraint(factory: str) -> str:
    return pilot_ad.queue_constraint(factory)


def pilot_state(ad: Ad) -> PilotState:
    """Idle pilots split by where they wait: at the factory, at the CE, or moving files."""
    return _state_of(pilot_ad.read_pilot_ad(ad))


def _state_of(pilot: PilotAd) -> PilotState:
    if pilot.status is JobStatus.RUNNING:
        return PilotState.RUNNING
    if pilot.status is JobStatus.HELD:
        return PilotState.HELD
    if pilot.status in _GONE:
        return PilotState.COMPLETED
    if pilot.transferring or any(word in pilot.grid_job_status.upper() for word in _STAGING_WORDS):
        return PilotState.STAGING
    return PilotState.PENDING if pilot.grid_job_id else PilotState.WAITING


def parse_pilot(ad: Ad) -> Pilot | None:
    """A pilot from its queue ad, or None for a job that lacks our bookkeeping."""
    read = pilot_ad.read_pilot_ad(ad)
    if read.entry is None or read.frontend is None:
        return None
    state = _state_of(read)
    held = state is PilotState.HELD
    entered = read.entered_status or 0.0
    return Pilot(
        job_id=read.job_id,
        entry=read.entry,
        frontend=read.frontend,
        group=read.group,
        security_class=read.security_class,
        credential_id=read.credential_id,
        state=state,
        entered_state=entered,
        submitted=read.submitted or entered,
        hold_code=read.hold_code if held else None,
        hold_subcode=read.hold_subcode,
        num_holds=read.num_holds,
        last_hold_time=entered if held else None,
        member=read.member,
        hold_reason=holds.readable_hold(read.hold_reason) if held else "",
        refusal=holds.batch_refusal(read.hold_reason) if held else None,
        hold_kind=holds.hold_kind(read.hold_reason) if held else "",
        batch_job_id=read.batch_job_id,
        resource_unavailable_since=read.resource_unavailable_since,
    )


def parse_requests(ads: Iterable[Ad], factory: str) -> tuple[list[protocol.PublishedRequest], list[str]]:
    """Requests addressed to this factory, and why each malformed one among them was ignored.

    Ads for other factories are not ours to judge and are skipped quietly.
    """
    requests, malformed = [], []
    for ad in ads:
        if ad.get(protocol.R_FACTORY) != factory:
            continue
        try:
            requests.append(protocol.read_request(ad))
        except protocol.MalformedAd as err:
            malformed.append(f"request ad {str(ad.get('Name', '?'))[:80]!r} ignored: {err}")
    return requests, malformed


@dataclass(frozen=True)
class CompletedRead:
    """Pilots that left the queue since the checkpoint, with their reports, and the checkpoint after them."""

    pilots: tuple[completed.CompletedPilot, ...]
    following: completed.Checkpoint


@dataclass(frozen=True)
class FactoryView:
    """What one factory cycle saw. `pilots` is None when the queue could not be read:
    then nothing may be submitted, or it could be submitted twice. `completed` is None
    when the history could not be read: the checkpoint stays, the next cycle asks again."""

    pilots: tuple[Pilot, ...] | None
    requests: tuple[protocol.PublishedRequest, ...]
    problems: tuple[str, ...] = ()
    completed: CompletedRead | None = None
    cloud: CloudView = field(default_factory=CloudView)
    """The cloud entries' instances, per account listed (None where it could not be)."""
    instance_claims: Mapping[str, str] | None = None
    """Instance id -> the queued pilot naming it (EC2InstanceName), leaving ones included; None with `pilots`."""
    requests_known: bool = True
    """False when the requests could not be read: `requests` is then empty, which says nothing about
    whether frontends ask for pilots (the decision submits nothing new; health does not read it as "none")."""


def observe(config: FactoryConfig, ports: FactoryPorts, now: float, *, with_history: bool = True) -> FactoryView:
    """Read the queue, the requests, (`with_history`) the pilots that left and the cloud instances, at once.

    A failure is a problem of the cycle, not zero pilots (or instances).
    """
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="factory-observe") as pool:
        queue = pool.submit(_read_queue, ports, config)
        requests = pool.submit(_read_requests, ports, config)
        history = pool.submit(_read_completed, ports, config, now) if with_history else None
        instances = pool.submit(read_cloud, ports.cloud, config)
        (pilots, claims, queue_problem), (found, request_problems) = queue.result(), requests.result()
        completed_read, history_problem = history.result() if history is not None else (None, None)
        cloud = instances.result()
    problems = tuple(p for p in (queue_problem, *request_problems, history_problem, *cloud.problems) if p)
    return FactoryView(pilots, tuple(found or ()), problems, completed_read, cloud, claims, found is not None)


def _read_queue(
    ports: FactoryPorts, config: FactoryConfig
) -> tuple[tuple[Pilot, ...] | None, dict[str, str] | None, str | None]:
    """The live pilots, and the instance ids every queued pilot names (leaving ones too)."""
    try:
        ads = ports.schedd.get().query(pilot_constraint(config.name), PILOT_PROJECTION)
    except CondorError as err:
        log.error("pilot queue unreadable this cycle: %s", err)
        return None, None, str(err)
    pilots = (parse_pilot(ad) for ad in ads)
    live = tuple(p for p in pilots if p is not None and p.state is not PilotState.COMPLETED)
    return live, instance_claims(ads), None


def instance_claims(ads: Iterable[Ad]) -> dict[str, str]:
    """Instance id -> "cluster.proc" of the job whose EC2InstanceName names it."""
    claims = {}
    for ad in ads:
        name = ad.get(pilot_ad.EC2_INSTANCE_NAME)
        if isinstance(name, str) and name:
            claims[name] = f"{ad.get(pilot_ad.CLUSTER_ID)}.{ad.get(pilot_ad.PROC_ID)}"
    return claims


def read_cloud(port: CloudPort, config: FactoryConfig) -> CloudView:
    """Every account the enabled ec2 entries use, listed at once, each call under its deadline.

    An account that cannot be listed is read as None with a problem naming
    its endpoint and entries: unknown, never "no instances"."""
    accounts, problems = policy.cloud_accounts(config)
    if not accounts:
        return CloudView((), tuple(problems))
    with ThreadPoolExecutor(max_workers=min(8, len(accounts)), thread_name_prefix="factory-cloud") as pool:
        reads = list(pool.map(lambda item: _list_account(port, config.name, *item), accounts.items()))
    problems += [read.problem for read in reads if read.problem]
    return CloudView(tuple(reads), tuple(problems))


def _list_account(port: CloudPort, factory: str, account: CloudAccount, entries: tuple[str, ...]) -> AccountRead:
    try:
        found = port.instances(account.endpoint, account.credentials, factory)
    except CloudError as err:
        who = "entry" if len(entries) == 1 else "entries"
        problem = f"{who} {', '.join(entries)}: instances at {account.endpoint} unknown this cycle: {err}"
        log.error("%s", problem)
        return AccountRead(account, entries, None, problem)
    return AccountRead(account, entries, tuple(found))


def trusted_frontends(config: FactoryConfig) -> dict[str, str]:
    """Each frontend some advertised entry serves, with the identity it must authenticate as.

    A frontend named with two identities (one per entry) keeps the first in
    entry order; `decide` still checks each request against its entry's own."""
    trusted: dict[str, str] = {}
    for entry in policy.advertised_entries(config).values():
        for name, allowed in entry.frontends.items():
            trusted.setdefault(name, allowed.identity)
    return trusted


def request_constraint(config: FactoryConfig, trusted: dict[str, str]) -> str:
    """Requests for this factory from trusted frontends, the identity compared first."""
    trusted_only = adread.trusted_constraint(protocol.R_FRONTEND, trusted)
    return f"({trusted_only}) && {protocol.R_FACTORY} =?= {classad2.quote(config.name)}"


def _read_requests(
    ports: FactoryPorts, config: FactoryConfig
) -> tuple[list[protocol.PublishedRequest] | None, list[str]]:
    """Requests from trusted frontends only, projected; an ad the collector cannot send costs only itself;
    None when the collector could not be read.

    Ads under a trusted frontend's name from another identity are counted and
    named, never read further."""
    trusted = trusted_frontends(config)
    try:
        read = adread.read_isolated(
            ports.wms, protocol.REQUEST_TYPE, request_constraint(config, trusted), protocol.REQUEST_PROJECTION
        )
    except CondorError as err:
        log.error("requests unreadable this cycle: %s", err)
        return None, [str(err)]
    requests, malformed = parse_requests(read.ads, config.name)
    ignored = summarised(malformed) + read.problems(protocol.REQUEST_TYPE) + _impostors(ports, config, trusted)
    if ignored:
        log.warning("request ads ignored this cycle (%d problem(s)); first: %s", len(ignored), ignored[0])
    return requests, ignored


MAX_MALFORMED_LISTED = 5


def summarised(malformed: list[str]) -> list[str]:
    """The malformed ads one per problem when they are few; one line for a flood of them."""
    if len(malformed) <= MAX_MALFORMED_LISTED:
        return malformed
    line = summary.summarise("malformed request ads ignored", [("trusted frontends", m) for m in malformed])
    return [line] if line else []


def _impostors(ports: FactoryPorts, config: FactoryConfig, trusted: dict[str, str]) -> list[str]:
    def claimed(name: str) -> str | None:
        """The frontend a request ad's Name (frontend.group/entry@factory) claims, if it is addressed to us."""
        return name.split(".", 1)[0] if name.endswith(f"@{config.name}") else None

    return adread.impostors(ports.wms, protocol.REQUEST_TYPE, trusted, claimed)


def checkpoint_path(config: FactoryConfig) -> Path:
    """Where the completed-pilot accounting records how far the history has been read."""
    return config.work_dir / "completed-checkpoint.json"


def totals_path(config: FactoryConfig) -> Path:
    """The completed-pilot totals, saved with the checkpoint they count up to."""
    return config.work_dir / "completed-totals.json"


def _read_completed(ports: FactoryPorts, config: FactoryConfig, now: float) -> tuple[CompletedRead | None, str | None]:
    totals = completed.CompletedTotals(totals_path(config))
    checkpoint = completed.checkpoint_of_record(totals, checkpoint_path(config), now)
    try:
        pilots, following = completed.read_completed(ports.schedd.get(), config.name, checkpoint)
    except CondorError as err:
        log.error("completed pilots not read this cycle: %s", err)
        return None, str(err)
    return CompletedRead(tuple(pilots), following), None

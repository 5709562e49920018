"""What the factory does with its pilots this cycle: submit, remove, release.

``decide`` is the factory's whole policy as one pure function: the accepted
requests, the pilots in the queue, each entry's policy and ``now`` in, a
``FactoryPlan`` out. Nothing here talks to HTCondor or reads the config, so
a recorded cycle replays exactly and every rule is tested with plain tables.
Every number carries the steps that made it and the limits that held it
back (``bound_by``, recorded by the one rule in `updraft.records`: a limit
is named when it holds the number below what was wanted, ties included),
because "why did the factory not submit?" is the question operators ask.
Removals and releases follow the same rule: a cap is named when it defers
some of them (their wish is every pilot a rule picked).

Order of the policy, per entry:

1. **Screen requests.** Unknown entry, a frontend not allowed on the entry,
   an identity other than the frontend's configured one, a security class
   the frontend may not use, or malformed values: rejected, with a reason.
   Two acceptable requests for one (entry, frontend, group) keep the first
   in sorted order (deterministic) and reject the rest.
2. **Pilot rules**, for every pilot whatever its request: held pilots are
   released after their backoff or removed; stuck (stale) pilots are
   removed. They run first so a stuck pilot is replaced, not counted.
   A pilot the batch system refused (bad partition, too much memory:
   `updraft.factory.holds`) is removed, never released, and its entry
   submits nothing in that cycle (bound ``entry.batch_refused``).
3. **Request removals.** Idle pilots beyond the request's `idle` go first
   (waiting, then pending, then staging; newest first); with mode ``all`` and
   ``idle == 0`` running ones follow (newest first), never more than the
   request's `remove_max`.
4. **Submissions**: the request's `idle` minus its idle pilots, within every
   limit, each counted as it will be once this cycle's removals and
   releases are done (a released pilot is idle again).
5. **Member CEs.** An entry set's submissions are spread over its members
   available at ``now`` (`EntryPolicy.members`) by the set's policy
   (`updraft.factory.policy.choose_members`: ``least_idle`` by the idle
   pilots observed at each member, every frontend's; ``round_robin`` dealt
   from the cycle number), one `Submit` per member, each already cut into
   clusters of the entry's cluster size. Act renders and submits exactly
   that: nothing is decided after decide.

The entry's health (`EntryPolicy.health`, decided before by
`updraft.factory.health`) is one more limit under the bound
``entry.health``: a banned entry submits nothing (its record says since
when and why), a degraded one keeps at most its cap of idle pilots, a
probing one at most its probe count of pilots in flight, over all frontends.

Per-cycle caps (submits, removals, releases) are per entry. Removals are
taken by priority: held pilots, then stale idle, then stale running (oldest
first in each), then request removals. Where several requests compete for
one room (the entry's or a frontend's), the room is shared out in proportion
to what each wanted, by largest remainder, in sorted (frontend, group)
order: no request starves because its name sorts late.

A (frontend, group) with pilots but no accepted request this cycle gets no
submissions, and its idle pilots are left alone: its ad may only have
expired briefly, and removing on a missing ad would throw away queued
pilots the frontend still wants. Stale and hold rules still apply to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from updraft import timefmt
from updraft.factory.health import is_probe
from updraft.factory.health_model import EntryHealth, HealthState
from updraft.factory.model import (
    IDLE_STATES,
    LIVE_STATES,
    EntryDecision,
    EntryInputs,
    EntryPolicy,
    FactoryPlan,
    FrontendAccess,
    HoldPolicy,
    Pilot,
    PilotCounts,
    PilotState,
    Rejection,
    Release,
    Remove,
    Request,
    StaleAges,
    Submit,
)
from updraft.factory.policy import choose_members
from updraft.protocol import R_CREDENTIAL, RemoveMode, pilot_params_problem
from updraft.records import Cap, Record, apply_cap, share_out, tightest
from updraft.tokens import PILOT_AUTHZ

Key = tuple[str, str]
"""(frontend, group) on one entry."""

# Removal reasons, in the order their Remove actions are listed.
BATCH_REFUSED = "refused by the batch system"
HELD_STALE = "stale held"
HELD_UNRECOVERABLE = "unrecoverable hold"
HELD_TOO_OFTEN = "too many holds"
STALE_IDLE = "stale idle"
STALE_RUNNING = "stale running"
EXCESS_IDLE = "excess idle"
REMOVE_ALL = "remove all"
REASONS = (
    BATCH_REFUSED,
    HELD_STALE,
    HELD_UNRECOVERABLE,
    HELD_TOO_OFTEN,
    STALE_IDLE,
    STALE_RUNNING,
    EXCESS_IDLE,
    REMOVE_ALL,
)

_PRIORITY = {BATCH_REFUSED: 0, HELD_STALE: 0, HELD_UNRECOVERABLE: 0, HELD_TOO_OFTEN: 0, STALE_IDLE: 1, STALE_RUNNING: 2}
"""Removal priority under the per-cycle cap: held pilots block submission, so they go first."""

_EXCESS_ORDER = {PilotState.WAITING: 0, PilotState.PENDING: 1, PilotState.STAGING: 2}
"""Waiting pilots never reached the CE, so removing them costs nothing remote; staging ones are about to run."""

_MODES = frozenset(mode.value for mode in RemoveMode)
_STATES = tuple(PilotState)


def job_order(job_id: str) -> tuple[int, int, str]:
    """Sort "cluster.proc" numerically ("9.0" before "10.0"); anything else sorts first, by text."""
    cluster, _, proc = job_id.partition(".")
    if cluster.isdigit() and proc.isdigit():
        return int(cluster), int(proc), job_id
    return -1, -1, job_id


# --------------------------------------------------------------------------
# Staleness, counting and holds: per pilot, no context needed
# --------------------------------------------------------------------------


def stale_after(state: PilotState, ages: StaleAges) -> float | None:
    """Seconds in `state` after which a pilot is stuck; None if that state never goes stale."""
    if state in IDLE_STATES:
        return ages.idle_seconds
    if state is PilotState.RUNNING:
        return ages.running_seconds
    if state is PilotState.HELD:
        return ages.held_seconds
    return None


def is_stale(pilot: Pilot, now: float, ages: StaleAges) -> bool:
    """Strictly older than its state's age: a pilot exactly at the limit still has its last second."""
    limit = stale_after(pilot.state, ages)
    return limit is not None and now - pilot.entered_state > limit


def count_pilots(pilots: Iterable[Pilot], now: float, policy: EntryPolicy) -> PilotCounts:
    """Live pilots by state, and how many of each are stale; completed and removed ones are ignored.

    The age limits are looked up once per call rather than per pilot: this
    runs over the whole queue every cycle (same rule as `is_stale`).
    """
    limits = {state: stale_after(state, policy.stale) for state in _STATES}
    by_state = dict.fromkeys(_STATES, 0)
    stale = dict.fromkeys(_STATES, 0)
    for pilot in pilots:
        state = pilot.state
        by_state[state] += 1
        limit = limits[state]
        if limit is not None and now - pilot.entered_state > limit:
            stale[state] += 1
    return PilotCounts(
        waiting=by_state[PilotState.WAITING],
        pending=by_state[PilotState.PENDING],
        staging=by_state[PilotState.STAGING],
        running=by_state[PilotState.RUNNING],
        held=by_state[PilotState.HELD],
        stale_idle=stale[PilotState.WAITING] + stale[PilotState.PENDING] + stale[PilotState.STAGING],
        stale_running=stale[PilotState.RUNNING],
        stale_held=stale[PilotState.HELD],
    )


def releases_so_far(pilot: Pilot) -> int:
    """NumHolds counts the current hold too; a held pilot with no NumHolds is on its first hold."""
    return max(0, pilot.num_holds - 1)


def backoff_seconds(pilot: Pilot, holds: HoldPolicy) -> float:
    """Wait before the next release: the base, doubled per release so far, at most the maximum."""
    doubling = 2.0 ** min(releases_so_far(pilot), 64)
    return min(holds.backoff_seconds * doubling, holds.max_backoff_seconds)


def held_since(pilot: Pilot) -> float:
    """The current hold's time; EnteredCurrentStatus is the same moment when LastHoldTime is missing."""
    return pilot.last_hold_time if pilot.last_hold_time is not None else pilot.entered_state


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the pilot rules do with one pilot, and the words for it (the removal reason)."""

    action: Literal["remove", "release", "wait"]
    reason: str
    seconds_left: float = 0.0


def hold_verdict(pilot: Pilot, now: float, policy: EntryPolicy) -> Verdict:
    """Release what may recover, after its backoff; remove what will not, or was held too long.

    A pilot the batch system refused (`Pilot.refusal`) is removed at once,
    whatever its hold code: the same description would be refused again on
    every release, until the entry's config changes.
    """
    holds = policy.holds
    if pilot.refusal is not None:
        return Verdict("remove", BATCH_REFUSED)
    if is_stale(pilot, now, policy.stale):
        return Verdict("remove", HELD_STALE)
    if pilot.hold_code not in holds.recoverable_codes:
        return Verdict("remove", HELD_UNRECOVERABLE)
    if releases_so_far(pilot) >= holds.max_releases:
        return Verdict("remove", HELD_TOO_OFTEN)
    left = held_since(pilot) + backoff_seconds(pilot, holds) - now
    if left > 0:
        return Verdict("wait", "backoff", left)
    return Verdict("release", "backoff passed")


def clusters(count: int, size: int) -> tuple[int, ...]:
    """`count` pilots as full clusters of `size` and one smaller remainder."""
    full, rest = divmod(count, size)
    return (size,) * full + ((rest,) if rest else ())


# --------------------------------------------------------------------------
# Screening requests
# --------------------------------------------------------------------------


def _malformed(request: Request) -> str | None:
    """Values no sane frontend sends; acting on them would be guessing."""
    if request.remove not in _MODES:
        return f"unknown remove mode {request.remove!r} (expected none, idle or all)"
    for name, value in (("idle", request.idle), ("max_pilots", request.max_pilots), ("remove_max", request.remove_max)):
        if value < 0:
            return f"{name} is negative ({value})"
    return pilot_params_problem(request.pilot)


def refusal(request: Request, policies: Mapping[str, EntryPolicy], now: float) -> str | None:
    """Why this request may not be acted on, or None if it may.

    The identity is the collector's AuthenticatedIdentity, never a name the
    ad gives itself: anyone can write `UpdraftFrontend = "cms"` into an ad.
    """
    policy = policies.get(request.entry)
    if policy is None:
        return f"unknown entry {request.entry!r}"
    access = policy.frontends.get(request.frontend)
    if access is None:
        return f"frontend {request.frontend!r} is not allowed on entry {request.entry!r}"
    if request.identity != access.identity:
        return f"authenticated as {request.identity!r}, but frontend {request.frontend!r} must be {access.identity!r}"
    if request.security_class not in access.security_classes:
        return f"security class {request.security_class!r} is not allowed for frontend {request.frontend!r}"
    return _credential_refusal(request, access) or _user_data_refusal(request, policy, now) or _malformed(request)


def _user_data_refusal(request: Request, policy: EntryPolicy, now: float) -> str | None:
    """A cloud entry's pilots carry the token in user data (docs/security.md): only a narrow, short one."""
    limit, credential = policy.user_data_token_seconds, request.credential
    if limit is None or credential is None:
        return None
    if credential.authz != PILOT_AUTHZ:
        allowed = ", ".join(credential.authz) or "nothing"
        return f"its pilot token allows {allowed}; a token in user data may allow {PILOT_AUTHZ[0]} alone"
    if credential.expires_at is None:
        return "its pilot token never expires; a token in user data must (docs/security.md)"
    left = credential.expires_at - now
    if left > limit:
        return (
            f"its pilot token is valid {left:.0f} s more; entry {policy.name!r} puts tokens into user data "
            f"only for at most {limit} s (cloud.max_token_lifetime_seconds)"
        )
    return None


def _credential_refusal(request: Request, access: FrontendAccess) -> str | None:
    """The sealed identity must be the authenticated one: a blob lifted from another frontend's ad fails here
    or, bound to that frontend's name, already failed to open."""
    if request.credential_problem is not None:
        return f"credential refused: {request.credential_problem}"
    if request.credential is None:
        if access.require_credential:
            return f"no sealed credential ({R_CREDENTIAL}): its pilots could not join the VO pool"
        return None
    if request.credential.identity != request.identity:
        return (
            f"the identity sealed in the credential, {request.credential.identity!r}, is not the "
            f"authenticated {request.identity!r}"
        )
    return None


def _request_order(request: Request) -> tuple[str, str, str, str, str, int, int, str, int]:
    """A total order on requests, so which duplicate wins never depends on input order."""
    return (
        request.entry,
        request.frontend,
        request.group,
        request.security_class,
        request.identity or "",
        request.idle,
        request.max_pilots,
        request.remove,
        request.remove_max,
    )


@dataclass(slots=True)
class _Screened:
    accepted: dict[str, dict[Key, Request]] = field(default_factory=dict)
    """Per entry, per (frontend, group)."""
    rejected: list[Rejection] = field(default_factory=list)


def _screen(requests: Iterable[Request], policies: Mapping[str, EntryPolicy], now: float) -> _Screened:
    """Accept or reject every request, in sorted order."""
    screened = _Screened()
    for request in sorted(requests, key=_request_order):
        reason = refusal(request, policies, now)
        entry = screened.accepted.setdefault(request.entry, {}) if reason is None else {}
        if reason is None and request.key in entry:
            reason = "another request for this entry, frontend and group was accepted this cycle"
        if reason is None:
            entry[request.key] = request
        else:
            screened.rejected.append(Rejection(request, reason))
    return screened


# --------------------------------------------------------------------------
# A decision under construction
# --------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Draft:
    """Mutable while the policy runs on one (entry, frontend, group); frozen at the end.

    Compared and hashed by identity (eq=False): two drafts are never "equal".
    """

    entry: str
    frontend: str
    group: str
    request: Request | None
    pilots: list[Pilot]
    counts: PilotCounts
    removals: dict[str, list[str]] = field(default_factory=dict)
    removed_ids: set[str] = field(default_factory=set)
    removed_idle: int = 0
    removed_running: int = 0
    removed_held: int = 0
    released: list[str] = field(default_factory=list)
    record: Record = field(default_factory=Record)
    """The submission, its steps, bounds and notes (`updraft.records` says when a bound is recorded)."""

    @property
    def submit(self) -> int:
        """Pilots to submit so far: the record's number."""
        return self.record.value

    @property
    def total_after(self) -> int:
        """Live pilots once this cycle's removals are done (submissions not included)."""
        return self.counts.total - self.removed_idle - self.removed_running - self.removed_held

    @property
    def idle_after(self) -> int:
        """Idle pilots once removals and releases are done: a released pilot queues again."""
        return self.counts.idle - self.removed_idle + len(self.released)

    @property
    def held_after(self) -> int:
        """Held pilots not removed; released ones still count until they prove themselves."""
        return self.counts.held - self.removed_held

    def remove(self, pilot: Pilot, reason: str) -> None:
        self.removals.setdefault(reason, []).append(pilot.job_id)
        self.removed_ids.add(pilot.job_id)
        if pilot.state is PilotState.RUNNING:
            self.removed_running += 1
        elif pilot.state is PilotState.HELD:
            self.removed_held += 1
        else:
            self.removed_idle += 1

    def freeze(self, spread: _Spread) -> EntryDecision:
        return EntryDecision(
            entry=self.entry,
            frontend=self.frontend,
            group=self.group,
            request=self.request,
            actions=self._actions(spread),
            inputs=spread.inputs(self.counts),
            steps=tuple(self.record.steps),
            bound_by=tuple(self.record.bound_by),
            notes=tuple(self.record.notes),
        )

    def _actions(self, spread: _Spread) -> tuple[Submit | Remove | Release, ...]:
        """Removals first (they make room), then releases, then the submissions (one per member CE)."""
        actions: list[Submit | Remove | Release] = [
            Remove(tuple(self.removals[reason]), reason) for reason in REASONS if reason in self.removals
        ]
        if self.released:
            actions.append(Release(tuple(self.released)))
        if self.submit > 0 and self.request is not None:
            actions.extend(_submissions(self.entry, self.request, self.submit, spread))
        return tuple(actions)


def _new_draft(
    entry: str, key: Key, request: Request | None, pilots: list[Pilot], now: float, policy: EntryPolicy
) -> _Draft:
    return _Draft(entry, key[0], key[1], request, pilots, count_pilots(pilots, now, policy))


# --------------------------------------------------------------------------
# Step 2: pilot rules (holds and staleness), under the per-cycle caps
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A pilot some rule wants to act on, and where it stands in the queue for the cap."""

    order: tuple[float, float, tuple[int, int, str]]
    draft: _Draft
    pilot: Pilot
    reason: str


def pilot_verdict(pilot: Pilot, now: float, policy: EntryPolicy) -> Verdict | None:
    """What the pilot rules say about one pilot, whatever its request; None: leave it."""
    if pilot.state is PilotState.HELD:
        return hold_verdict(pilot, now, policy)
    if is_stale(pilot, now, policy.stale):
        return Verdict("remove", STALE_IDLE if pilot.state in IDLE_STATES else STALE_RUNNING)
    return None


def _candidates(drafts: Sequence[_Draft], policy: EntryPolicy, now: float) -> tuple[list[_Candidate], list[_Candidate]]:
    """Every removal (by priority, oldest first) and release (longest held first) the rules want."""
    removals: list[_Candidate] = []
    releases: list[_Candidate] = []
    for draft in drafts:
        waiting: list[float] = []
        for pilot in draft.pilots:
            verdict = pilot_verdict(pilot, now, policy)
            if verdict is None:
                continue
            if verdict.action == "wait":
                waiting.append(verdict.seconds_left)
                continue
            if verdict.action == "release":
                releases.append(_Candidate((0, held_since(pilot), job_order(pilot.job_id)), draft, pilot, ""))
            else:
                order = (_PRIORITY[verdict.reason], pilot.entered_state, job_order(pilot.job_id))
                removals.append(_Candidate(order, draft, pilot, verdict.reason))
        _note_refusals(draft)
        if waiting:
            draft.record.notes.append(
                f"{len(waiting)} held pilots wait out their backoff (the first may be released in {min(waiting):.0f} s)"
            )
    return sorted(removals, key=_by_order), sorted(releases, key=_by_order)


def refusals(pilots: Iterable[Pilot]) -> dict[str, int]:
    """Held pilots the batch system refused, counted by its words, in sorted order."""
    found: dict[str, int] = {}
    for pilot in pilots:
        if pilot.state is PilotState.HELD and pilot.refusal is not None:
            found[pilot.refusal] = found.get(pilot.refusal, 0) + 1
    return dict(sorted(found.items()))


def _note_refusals(draft: _Draft) -> None:
    """Say in the batch system's own words why pilots are removed instead of released."""
    for words, count in refusals(draft.pilots).items():
        draft.record.notes.append(f"{count} held pilots removed, not released: {words}")


def _by_order(candidate: _Candidate) -> tuple[float, float, tuple[int, int, str]]:
    return candidate.order


def _capped(candidates: list[_Candidate], cap: int | None, bound: str, what: str) -> list[_Candidate]:
    """The first `cap` candidates; each draft that loses some says how many, and which cap."""
    if cap is None or len(candidates) <= cap:
        return candidates
    deferred: dict[_Draft, int] = {}
    for candidate in candidates[max(0, cap) :]:
        deferred[candidate.draft] = deferred.get(candidate.draft, 0) + 1
    for draft, count in deferred.items():
        draft.record.notes.append(f"{count} {what} deferred to a later cycle: at most {cap} per cycle")
        draft.record.bound(bound)
    return candidates[: max(0, cap)]


def _apply_pilot_rules(drafts: Sequence[_Draft], policy: EntryPolicy, now: float) -> int:
    """Holds and staleness for every pilot; returns how many removals that used."""
    removals, releases = _candidates(drafts, policy, now)
    caps = policy.per_cycle
    taken = _capped(removals, caps.max_removals, "entry.max_removals", "removals")
    for candidate in taken:
        candidate.draft.remove(candidate.pilot, candidate.reason)
    for candidate in _capped(releases, caps.max_releases, "entry.max_releases", "releases"):
        candidate.draft.released.append(candidate.pilot.job_id)
    return len(taken)


# --------------------------------------------------------------------------
# Step 3: removals the requests ask for
# --------------------------------------------------------------------------


def _excess_first(pilot: Pilot) -> tuple[int, float, tuple[int, int, str]]:
    """Sort key, used reversed: waiting before pending before staging, newest first."""
    return -_EXCESS_ORDER[pilot.state], pilot.submitted, job_order(pilot.job_id)


def _newest_running(pilot: Pilot) -> tuple[float, tuple[int, int, str]]:
    """Sort key, used reversed: the pilot that started last has done the least work."""
    return pilot.entered_state, job_order(pilot.job_id)


def _excess_idle(draft: _Draft, request: Request) -> list[tuple[Pilot, str]]:
    """Idle pilots beyond what the request wants, at most its remove_max."""
    excess = draft.idle_after - request.idle
    if excess <= 0:
        return []
    if excess > request.remove_max:
        draft.record.bound("request.remove_max")
    idle = [p for p in draft.pilots if p.state in IDLE_STATES and p.job_id not in draft.removed_ids]
    chosen = sorted(idle, key=_excess_first, reverse=True)[: min(excess, request.remove_max)]
    return [(pilot, EXCESS_IDLE) for pilot in chosen]


def _running_to_remove(draft: _Draft, budget: int) -> list[tuple[Pilot, str]]:
    """Mode all with nothing wanted: running pilots too, as many as the remove_max left allows."""
    running = [p for p in draft.pilots if p.state is PilotState.RUNNING and p.job_id not in draft.removed_ids]
    if len(running) > budget:
        draft.record.bound("request.remove_max")
    chosen = sorted(running, key=_newest_running, reverse=True)[: max(0, budget)]
    return [(pilot, REMOVE_ALL) for pilot in chosen]


def _removal_wish(draft: _Draft, request: Request) -> list[tuple[Pilot, str]]:
    """The pilots this request asks to remove, in the order to remove them.

    Running pilots go only with mode all and a request for no idle pilots:
    a frontend still asking for pilots there wants the running ones too.
    """
    if request.remove == RemoveMode.NONE.value:
        return []
    wish = _excess_idle(draft, request)
    if request.remove == RemoveMode.ALL.value and request.idle == 0:
        wish += _running_to_remove(draft, request.remove_max - len(wish))
    return wish


def _apply_request_removals(drafts: Sequence[_Draft], policy: EntryPolicy, used: int) -> None:
    """Each request's removals, the entry's remaining removal cap shared out between them."""
    asking = [(draft, draft.request) for draft in drafts if draft.request is not None]
    wishes = [_removal_wish(draft, request) for draft, request in asking]
    wanted = [len(wish) for wish in wishes]
    cap = policy.per_cycle.max_removals
    room = sum(wanted) if cap is None else cap - used
    for (draft, request), wish, share in zip(asking, wishes, share_out(wanted, room), strict=True):
        if not wish:
            continue
        draft.record.step("remove", len(wish), f"remove mode {request.remove}, remove_max {request.remove_max}")
        if share < len(wish):
            draft.record.step(
                "remove", share, f"entry.max_removals: {max(0, room)} left this cycle, {sum(wanted)} wanted"
            )
            draft.record.bound("entry.max_removals")
        for pilot, reason in wish[:share]:
            draft.remove(pilot, reason)


# --------------------------------------------------------------------------
# Step 4: submissions
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tally:
    """Pilots of several drafts (an entry, or one frontend on it), as they will be after this cycle."""

    total: int
    idle: int
    held: int
    refused: Mapping[str, int] = field(default_factory=dict)
    """Held pilots the batch system refused (removed this cycle), by its words."""


def _tally(drafts: Sequence[_Draft]) -> _Tally:
    total = idle = held = 0
    for draft in drafts:
        total, idle, held = total + draft.total_after, idle + draft.idle_after, held + draft.held_after
    return _Tally(total, idle, held, refusals(pilot for draft in drafts for pilot in draft.pilots))


def _too_many_held(draft: _Draft, level: str, held: int, max_held: int | None) -> None:
    """Many held pilots mean the site is failing them: sending more only makes more."""
    if max_held is not None and held >= max_held:
        draft.record.lower(0, "zero", (f"{level}.max_held",), f"{held} held, at most {max_held}")


def _refused_here(draft: _Draft, refused: Mapping[str, int]) -> None:
    """The batch system refused this entry's pilots: the same description now would only be refused
    again. Nothing is submitted this cycle; the next cycle, with the refused pilots gone, tries again,
    so a fixed config (or a site that changed its mind) is noticed within two cycles."""
    if refused:
        words = "; ".join(refused)
        draft.record.notes.append(f"batch system refused {sum(refused.values())} pilots: nothing submitted")
        draft.record.lower(0, "zero", ("entry.batch_refused",), words)


def _own_bounds(draft: _Draft, request: Request, policy: EntryPolicy, entry: _Tally, front: _Tally) -> None:
    """The wish and the bounds that apply to this request alone."""
    draft.record.want(request.idle - draft.idle_after)
    draft.record.step(
        "wanted",
        request.idle - draft.idle_after,
        f"{request.idle} idle requested, {draft.idle_after} idle after removals and releases",
    )
    room = request.max_pilots - draft.total_after
    draft.record.lower(room, "cap", ("request.max_pilots",), f"{draft.total_after} of {request.max_pilots} pilots")
    if policy.in_downtime:
        draft.record.notes.append("entry in downtime: nothing submitted")
        draft.record.lower(0, "zero", ("entry.downtime",), "")
    elif policy.members == ():
        draft.record.notes.append("every member CE is in downtime: nothing submitted")
        draft.record.lower(0, "zero", ("entry.downtime",), "every member in downtime")
    _banned(draft, policy.health)
    _too_many_held(draft, "entry", entry.held, policy.limits.max_held)
    _too_many_held(draft, "frontend", front.held, policy.limits_for(draft.frontend).max_held)
    _refused_here(draft, entry.refused)


HEALTH_BOUND = "entry.health"
"""The bound a health state (banned, degraded, probing) records when it holds submissions back."""


def _since(moment: float) -> str:
    return timefmt.utc(moment)


def _banned(draft: _Draft, health: EntryHealth | None) -> None:
    """A banned entry gets nothing: the record says so, why, and since when."""
    if health is None or health.state is not HealthState.BANNED:
        return
    words = f"banned since {_since(health.since)}: {health.reason}"
    draft.record.notes.append(f"entry {words}: nothing submitted")
    draft.record.lower(0, "zero", (HEALTH_BOUND,), words)


def _health_limit(health: EntryHealth | None, entry: _Tally, probes: int) -> tuple[str, int | None, str]:
    """Degraded caps the entry's idle pilots; probing the probes (over all frontends): its cap is what is
    left of ``probe_count`` once the probes no longer queued are taken off, less the `probes` still queued."""
    if health is None or health.cap is None or health.state is HealthState.BANNED:
        return HEALTH_BOUND, None, ""
    if health.state is HealthState.PROBING:
        return HEALTH_BOUND, health.cap - probes, f"probing: {probes} probes queued, {health.cap} left to send"
    return HEALTH_BOUND, health.cap - entry.idle, f"{health.state.value}: {entry.idle} of {health.cap} idle"


def _queued_probes(health: EntryHealth | None, drafts: Sequence[_Draft]) -> int:
    """The entry's live pilots submitted since probing began: its probes (older pilots are not)."""
    if health is None or health.state is not HealthState.PROBING:
        return 0
    return sum(1 for draft in drafts for pilot in draft.pilots if is_probe(pilot.submitted, health.since))


def _room(limit: int | None, used: int) -> int | None:
    return None if limit is None else limit - used


def _entry_cap(policy: EntryPolicy, entry: _Tally, probes: int) -> Cap:
    limits, submits = policy.limits, policy.per_cycle.max_submits
    return tightest(
        (
            ("entry.max_pilots", _room(limits.max_pilots, entry.total), f"{entry.total} of {limits.max_pilots} pilots"),
            ("entry.max_idle", _room(limits.max_idle, entry.idle), f"{entry.idle} of {limits.max_idle} idle"),
            ("entry.max_submits", submits, f"at most {submits} submissions per cycle"),
            _health_limit(policy.health, entry, probes),
        )
    )


def _frontend_cap(policy: EntryPolicy, frontend: str, front: _Tally) -> Cap:
    limits = policy.limits_for(frontend)
    return tightest(
        (
            (
                "frontend.max_pilots",
                _room(limits.max_pilots, front.total),
                f"{frontend} has {front.total} of {limits.max_pilots} pilots",
            ),
            (
                "frontend.max_idle",
                _room(limits.max_idle, front.idle),
                f"{frontend} has {front.idle} of {limits.max_idle} idle",
            ),
        )
    )


def _apply_cap(drafts: Sequence[_Draft], cap: Cap) -> None:
    """Share the cap's room between the drafts, in proportion to what each still wants."""
    apply_cap([draft.record for draft in drafts], cap, "share", "wanted in all")


def _apply_submissions(drafts: Sequence[_Draft], policy: EntryPolicy) -> None:
    """Each request's wish within its own bounds, then its frontend's room, then the entry's."""
    entry = _tally(drafts)
    by_frontend: dict[str, list[_Draft]] = {}
    for draft in drafts:
        by_frontend.setdefault(draft.frontend, []).append(draft)
    fronts = {frontend: _tally(group) for frontend, group in by_frontend.items()}
    for draft in drafts:
        if draft.request is not None:
            _own_bounds(draft, draft.request, policy, entry, fronts[draft.frontend])
    asking = [draft for draft in drafts if draft.request is not None]
    for frontend, group in by_frontend.items():
        _apply_cap([d for d in group if d.request is not None], _frontend_cap(policy, frontend, fronts[frontend]))
    _apply_cap(asking, _entry_cap(policy, entry, _queued_probes(policy.health, drafts)))
    for draft in asking:
        draft.record.step("submit", draft.submit)


# --------------------------------------------------------------------------
# Step 5: spreading an entry set's submissions over its member CEs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spread:
    """Where one entry's submissions go this cycle, and what decided it."""

    cluster_size: int
    members: tuple[str, ...] | None
    """The member CEs available at `now`; None: a standalone entry, its own only CE."""
    idle_by_member: Mapping[str, int]
    """Idle pilots queued at each member (every frontend's), as observed."""
    set_policy: str
    start: int
    """The cycle number: where round robin starts dealing, so the first member does not always get the odd pilot."""

    def inputs(self, counts: PilotCounts) -> EntryInputs:
        return EntryInputs(pilots=counts, members=self.members or (), idle_by_member=self.idle_by_member)


def _spread(policy: EntryPolicy, idle_by_member: Mapping[str, int], cycle: int) -> _Spread:
    members = policy.members
    idle = {member: idle_by_member.get(member, 0) for member in members} if members is not None else {}
    return _Spread(policy.cluster_size, members, idle, policy.set_policy, cycle)


def member_shares(count: int, spread: _Spread) -> dict[str | None, int]:
    """How many of `count` pilots go to each member CE (None: the standalone entry itself).

    Members given none are left out. Every member of a set shares the same
    observed idle counts, so two requests on one set are spread the same way
    whatever order they are decided in.
    """
    if spread.members is None:
        return {None: count}
    shares = choose_members(count, spread.members, spread.idle_by_member, spread.set_policy, start=spread.start)
    return {member: share for member, share in shares.items()}


def _submissions(entry: str, request: Request, count: int, spread: _Spread) -> list[Submit]:
    """One Submit per member CE, each in clusters of at most the entry's cluster size."""
    return [
        Submit(
            entry,
            request.frontend,
            request.group,
            request.security_class,
            share,
            clusters(share, spread.cluster_size),
            request.pilot,
            request.credential,
            member,
        )
        for member, share in member_shares(count, spread).items()
    ]


# --------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------


def _bucket(pilots: Iterable[Pilot]) -> dict[str, dict[Key, list[Pilot]]]:
    """Live pilots per entry, per (frontend, group): one pass, so no rule ever rescans the queue."""
    found: dict[str, dict[Key, list[Pilot]]] = {}
    for pilot in pilots:
        if pilot.state in LIVE_STATES:
            found.setdefault(pilot.entry, {}).setdefault((pilot.frontend, pilot.group), []).append(pilot)
    return found


def _idle_by_member(
    queue: Mapping[str, Mapping[Key, list[Pilot]]], policies: Mapping[str, EntryPolicy]
) -> dict[str, int]:
    """Idle pilots per member CE they went to (`Pilot.member`), whoever's they are.

    Only pilots that can be at a set's member are looked at: those of sets,
    and of entries no longer configured (a set's member is never a
    standalone entry). A standalone entry's pilots are skipped, so a
    factory without sets pays nothing for this.
    """
    idle: dict[str, int] = {}
    for entry, keys in queue.items():
        policy = policies.get(entry)
        if policy is not None and policy.members is None:
            continue
        for pilot in (pilot for found in keys.values() for pilot in found if pilot.state in IDLE_STATES):
            where = pilot.member or pilot.entry
            idle[where] = idle.get(where, 0) + 1
    return idle


def _note_missing_requests(draft: _Draft, refused: Mapping[Key, list[str]]) -> None:
    """Say why a (frontend, group) gets no submissions, and that its idle pilots stay."""
    for reason in refused.get((draft.frontend, draft.group), ()):
        draft.record.notes.append(f"request rejected: {reason}")
    if draft.request is None and draft.counts.idle:
        draft.record.notes.append(f"no accepted request this cycle: {draft.counts.idle} idle pilots left alone")


def _decide_entry(
    policy: EntryPolicy,
    requests: Mapping[Key, Request],
    refused: Mapping[Key, list[str]],
    pilots: Mapping[Key, list[Pilot]],
    now: float,
    spread: _Spread,
) -> list[EntryDecision]:
    """Steps 2-5 for every (frontend, group) on one entry, in sorted order."""
    keys = sorted(requests.keys() | pilots.keys())
    drafts = [_new_draft(policy.name, key, requests.get(key), pilots.get(key, []), now, policy) for key in keys]
    for draft in drafts:
        _note_missing_requests(draft, refused)
    used = _apply_pilot_rules(drafts, policy, now)
    _apply_request_removals(drafts, policy, used)
    _apply_submissions(drafts, policy)
    return [draft.freeze(spread) for draft in drafts]


def _refused_by_entry(rejected: Iterable[Rejection]) -> dict[str, dict[Key, list[str]]]:
    found: dict[str, dict[Key, list[str]]] = {}
    for rejection in rejected:
        request = rejection.request
        found.setdefault(request.entry, {}).setdefault(request.key, []).append(rejection.reason)
    return found


def decide(
    requests: Iterable[Request],
    pilots: Iterable[Pilot],
    policies: Mapping[str, EntryPolicy],
    now: float,
    cycle: int = 0,
) -> FactoryPlan:
    """The factory's whole policy for one cycle: pure, deterministic, replayable.

    `policies` maps entry names to their policy; pilots of an entry with no
    policy are only counted (`FactoryPlan.unmanaged`), never acted on.
    `cycle` is the cycle number, where round-robin entry sets start dealing
    (0 for a plan that is only shown).
    """
    screened = _screen(requests, policies, now)
    queue = _bucket(pilots)
    idle_by_member = _idle_by_member(queue, policies)
    refused = _refused_by_entry(screened.rejected)
    decisions: list[EntryDecision] = []
    for name in sorted(policies):
        accepted, mine = screened.accepted.get(name, {}), queue.get(name, {})
        if accepted or mine:
            policy = policies[name]
            spread = _spread(policy, idle_by_member, cycle)
            decisions.extend(_decide_entry(policy, accepted, refused.get(name, {}), mine, now, spread))
    unmanaged = {entry: sum(map(len, keys.values())) for entry, keys in sorted(queue.items()) if entry not in policies}
    return FactoryPlan(
        now=now, decisions=tuple(decisions), rejected=tuple(screened.rejected), unmanaged=unmanaged, cycle=cycle
    )

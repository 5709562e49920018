"""The entry health policy: each advertised entry's state from what its pilots did, decided purely.

Every cycle the service gathers this cycle's *outcomes* per entry
(`cycle_evidence`: pilots the queue shows held, running long enough to
count as healthy, or idle far too long; completed pilots' reports; and,
after act, the submissions the schedd refused for the entry's sake,
`submit_failures`) and calls
`decide_health` with the previous states, the per-entry history of
outcomes, the operators' overrides and each entry's settings. Nothing here
reads a file or the clock: ``now`` comes in, new states, the transitions
made, the updated history and a record of why come out.

**Outcomes.** `GOOD` is a pilot that ran for ``healthy_after_seconds``
(validation is over by then), or one that ended well with jobs without
having been counted so. Each pilot has one outcome: the job ids counted
good while running are remembered (`Evidence.counted`), their good end adds
nothing, and a bad end (no job, black hole, a failed step) or a hold
replaces the good they were counted with (`Evidence.retracted`). Every
other outcome is a failure with a cause (`CAUSES`). A pilot that ran no
job is a failure only where its own (frontend, group) still asks for idle
pilots at the entry (`asking_for_pilots`): at the end of a burst idle
pilots retire with no job through no fault of the site. Each outcome is
counted once, in the cycle it happens: a queued pilot's hold, start or
slow start happened at a known moment, and only the moments after the
previous evaluation and not after ``now`` are new; the
completed pilots come from the history checkpoint, which hands out each
pilot once. Outcomes are stamped with the cycle's ``now`` (not when the
pilot ended), so the history is appended in order and every window is one
binary search.

**The rules**, per entry, never faster than ``min_time_in_state_seconds``
after the last change (no flapping):

- the failure fraction is failures / max(outcomes, ``min_outcomes``) over
  the last ``window_seconds``: with fewer outcomes than ``min_outcomes``
  the missing ones count as good, so a couple of failures on a quiet entry
  never ban it;
- active -> degraded at ``degrade_fraction``;
- degraded -> banned at ``ban_fraction``; degraded -> active at or below
  ``recover_fraction`` over at least ``min_outcomes`` outcomes (recovering
  needs evidence: an empty window is no sign of repair; the gap between
  the two fractions is the hysteresis). Active
  never jumps straight to banned: degraded caps the pilots at risk while
  the evidence grows, and takes at most one minimum time;
- banned ignores evidence (it gets no pilots) and after ``ban_seconds``
  always moves to probing;
- probing sends at most ``probe_count`` probes in all (pilots submitted
  since it began, `is_probe`; its cap is what is left once the probes no
  longer queued are taken off, whether probing is the policy's or an
  operator's) and counts only their outcomes since it began: a
  majority of ``probe_count`` good -> active, a majority failed -> banned
  again (for another ``ban_seconds``). Probing -> active forgets the
  outcomes from before probing began: the probes showed the repair, and
  the failures that caused the ban, still in a window longer than the
  ban, would otherwise degrade the repaired site at once. With no request
  asking for pilots at the entry no probe can go out: probing waits, and
  its reason says so.

A cycle that could not read its queue changes nothing on evidence (its
window lacks the outcomes it could not see: unknown is never read as
zero); only time moves a state then (a ban ends, into probing).

**Overrides.** An unexpired operator `Override` sets the state whatever
the policy says (banned leaves straight to active if the operator says
so: the operator's word is the probe). An override to active also clears
the entry's history when it first applies, since the operator vouched for
the repair and the old failures would otherwise degrade the entry again
the moment the override ends. When an override expires the policy resumes
from the state the override left, with its ``since``: an operator's ban
that ends goes to probing at once if ``ban_seconds`` have passed.

Switched off (``enabled: false``), an entry is active with nothing capped,
whatever happened; overrides still apply.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from updraft import timefmt
from updraft.factory.completed import CompletedPilot
from updraft.factory.health_model import POLICY, EntryHealth, HealthState, Override, Transition
from updraft.factory.model import IDLE_STATES, Action, Pilot, PilotState, Submit
from updraft.records import Step

if TYPE_CHECKING:  # act talks to HTCondor; the policy only reads its plain results
    from updraft.factory.act import ActResult

GOOD = "good"
SUBMIT_FAILED = "submit_failed"
HELD_BATCH_REFUSED = "held_batch_refused"
HELD_BATCH_UNREACHABLE = "held_batch_unreachable"
HELD_OTHER = "held_other"
VALIDATION = "validation"
BLACK_HOLE = "black_hole"
PILOT_FAILED = "pilot_failed"
NO_JOB = "no_job"
SLOW_START = "slow_start"
CAUSES = (
    SUBMIT_FAILED,
    HELD_BATCH_REFUSED,
    HELD_BATCH_UNREACHABLE,
    HELD_OTHER,
    VALIDATION,
    BLACK_HOLE,
    PILOT_FAILED,
    NO_JOB,
    SLOW_START,
)
"""Why a pilot counts as failed; what ``ignore_causes`` may name."""


def is_probe(submitted: float, probing_since: float) -> bool:
    """A pilot submitted at or after probing began is a probe; an older one is not.

    The schedd's submission time (QDate) is whole seconds while `since`
    is the cycle's ``now``: a probe submitted in the cycle probing began may
    carry the second before it, so the second is what is compared.
    """
    return submitted >= math.floor(probing_since)


_HELD = {"batch_refused": HELD_BATCH_REFUSED, "batch_unreachable": HELD_BATCH_UNREACHABLE}
_STEP_CAUSES = {"validate": VALIDATION, "blackhole": BLACK_HOLE}


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """One entry's health policy, as the config gives it (defaults and reasoning: docs/entry-health.md)."""

    enabled: bool = True
    window_seconds: float = 3600.0
    min_outcomes: int = 5
    degrade_fraction: float = 0.5
    ban_fraction: float = 0.8
    recover_fraction: float = 0.2
    min_time_in_state_seconds: float = 600.0
    ban_seconds: float = 3600.0
    probe_count: int = 3
    degraded_max_idle: int = 2
    start_seconds: float = 7200.0
    """A pilot idle this long after submission counts as a slow start (a failure)."""
    healthy_after_seconds: float = 600.0
    """A pilot running this long counts as good."""
    history_seconds: float = 86400.0
    ignore_causes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class History:
    """One entry's outcomes within ``history_seconds``, oldest first: the times of good ones, and the
    times and causes of failures (two parallel tuples, so a window is a binary search, not a scan)."""

    good: tuple[float, ...] = ()
    bad: tuple[float, ...] = ()
    causes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.bad) != len(self.causes):
            raise ValueError(f"{len(self.bad)} failure times but {len(self.causes)} causes")

    def added(self, outcomes: Sequence[str], at: float) -> History:
        """With `outcomes` (GOOD or a cause) happened at `at`.

        Times stay in order, which the windows' binary searches rely on: after
        the clock stepped back, new outcomes are stamped at the last time kept
        (they are counted now, and age out a little later), never before it.
        """
        if not outcomes:
            return self
        at = max(at, self.good[-1] if self.good else at, self.bad[-1] if self.bad else at)
        failures = [cause for cause in outcomes if cause != GOOD]
        good = len(outcomes) - len(failures)
        return History(
            self.good + (at,) * good if good else self.good,
            self.bad + (at,) * len(failures) if failures else self.bad,
            self.causes + tuple(failures) if failures else self.causes,
        )

    def pruned(self, cutoff: float) -> History:
        """Without outcomes before `cutoff`; itself when there are none (the usual case, checked in O(1))."""
        old_good = bool(self.good) and self.good[0] < cutoff
        old_bad = bool(self.bad) and self.bad[0] < cutoff
        if not (old_good or old_bad):
            return self
        first_bad = bisect.bisect_left(self.bad, cutoff) if old_bad else 0
        return History(
            self.good[bisect.bisect_left(self.good, cutoff) :] if old_good else self.good,
            self.bad[first_bad:],
            self.causes[first_bad:],
        )

    def without_good(self, times: Iterable[float]) -> History:
        """Without one good outcome at each of `times` (one already pruned or forgotten is simply not there).

        Exact times only: a good at another time is another pilot's. (After
        the clock stepped back a good may have been stamped later than it was
        counted, `added`; then it stays, beside the failure that followed.)"""
        good = list(self.good)
        for at in times:
            index = bisect.bisect_left(good, at)
            if index < len(good) and good[index] == at:
                del good[index]
        return self if len(good) == len(self.good) else History(tuple(good), self.bad, self.causes)

    def after(self, start: float) -> History:
        """Only the outcomes strictly after `start` (those stamped at `start` are gone too)."""
        first_bad = bisect.bisect_right(self.bad, start)
        return History(
            self.good[bisect.bisect_right(self.good, start) :], self.bad[first_bad:], self.causes[first_bad:]
        )

    def since(self, start: float, ignore: frozenset[str], *, strictly: bool = False) -> Tally:
        """The outcomes at or after `start` (`strictly`: after it), failures by cause, without the ignored."""
        cut = bisect.bisect_right if strictly else bisect.bisect_left
        first_bad = cut(self.bad, start)
        good = len(self.good) - cut(self.good, start)
        if first_bad == len(self.bad):
            return Tally(good)
        by_cause: dict[str, int] = {}
        for cause in self.causes[first_bad:]:  # a window holds few failures: a plain loop beats Counter
            by_cause[cause] = by_cause.get(cause, 0) + 1
        for cause in ignore:
            by_cause.pop(cause, None)
        return Tally(good, sum(by_cause.values()), dict(sorted(by_cause.items())))


EMPTY = History()


@dataclass(frozen=True, slots=True)
class Tally:
    """Outcomes over some span: the good ones, the failures, and the failures by cause."""

    good: int = 0
    failed: int = 0
    failed_by_cause: Mapping[str, int] = field(default_factory=dict)

    def fraction(self, min_outcomes: int) -> float:
        """Failures over max(outcomes, `min_outcomes`): too few outcomes count the missing ones as good."""
        return self.failed / max(self.good + self.failed, min_outcomes, 1)

    def words(self) -> str:
        if not self.failed:
            return f"0 of {self.good} pilots failed"
        causes = ", ".join(f"{cause} {count}" for cause, count in self.failed_by_cause.items())
        return f"{self.failed} of {self.good + self.failed} pilots failed ({causes})"


@dataclass(frozen=True)
class HealthDecision:
    """What `decide_health` decided for every advertised entry."""

    health: dict[str, EntryHealth]
    transitions: tuple[Transition, ...]
    history: dict[str, History]
    records: dict[str, tuple[Step, ...]]
    """Per entry: the figures the state was decided from, and what held a change back."""
    counted: Mapping[str, float] = field(default_factory=dict)
    """The job ids counted good while running, for the next cycle (`Evidence.counted`; the service fills it)."""
    probe_ids: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per probing entry, its probes seen so far, for the next cycle (`Evidence.probe_ids`; the service fills it)."""
    forgotten: bool = False
    """Whether an entry's old outcomes were forgotten this cycle (an operator vouching for it, or probes
    showing the repair): the service then writes the history at once (`health_store.history_due`)."""


# --------------------------------------------------------------------------
# Outcomes: what this cycle saw, per entry
# --------------------------------------------------------------------------

Asking = frozenset[tuple[str, str, str]]
"""The (entry, frontend, group) whose request asks for idle pilots this cycle (`asking_for_pilots`)."""


class _Request(Protocol):
    """What `asking_for_pilots` reads of a request (the factory's `Request` or the published one)."""

    @property
    def entry(self) -> str: ...
    @property
    def frontend(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def idle(self) -> int: ...


def asking_for_pilots(requests: Iterable[_Request]) -> Asking:
    """Where pilots are still wanted: each (entry, frontend, group) whose request asks for idle pilots.

    A pilot that ran no job there says its jobs wait and it could not run
    them; elsewhere it is the end of a burst (`completed_outcome`).
    """
    return frozenset((request.entry, request.frontend, request.group) for request in requests if request.idle > 0)


def completed_outcome(pilot: CompletedPilot, asking: Asking = frozenset()) -> str | None:
    """A completed pilot's outcome from its report; None when it says nothing about the site.

    A pilot without a report is most often one the factory removed (excess
    idle, stale): no evidence. A pilot that ran no job is a failure only
    where its own (frontend, group) still asks for idle pilots at the entry
    (`asking`): its jobs wait, and it could not reach the pool or run them.
    Otherwise it idled out at the end of a burst, through no fault of the site.
    """
    report = pilot.report
    if report is None:
        return None
    if not report.ok:
        return _STEP_CAUSES.get(report.failed_step, PILOT_FAILED)
    if report.jobs_run <= 0:
        return NO_JOB if (pilot.entry, pilot.frontend, pilot.group) in asking else None
    return GOOD


def queue_outcome(pilot: Pilot, settings: HealthSettings, last: float, now: float) -> str | None:
    """What a queued pilot newly shows: a hold, a long enough run, or a start that took too long.

    "Newly": the moment it happened lies after `last` (the previous
    evaluation) and not after `now`, so each is counted in one cycle only.
    """
    state = pilot.state
    if state is PilotState.HELD:
        at = pilot.last_hold_time if pilot.last_hold_time is not None else pilot.entered_state
        return _HELD.get(pilot.hold_kind, HELD_OTHER) if last < at <= now else None
    if state is PilotState.RUNNING:
        return GOOD if last < pilot.entered_state + settings.healthy_after_seconds <= now else None
    if state in IDLE_STATES:
        return SLOW_START if last < pilot.submitted + settings.start_seconds <= now else None
    return None


def _queue_outcomes(
    pilots: Iterable[Pilot],
    settings: Mapping[str, HealthSettings],
    last: float | None,
    now: float,
    probing: Mapping[str, float],
) -> Iterable[tuple[Pilot, str]]:
    """Each queued pilot's new outcome (`queue_outcome`), skipping non-probes of probing entries."""
    for pilot in pilots:
        entry_settings = settings.get(pilot.entry)
        if entry_settings is None:
            continue
        probing_since = probing.get(pilot.entry)
        if probing_since is not None and not is_probe(pilot.submitted, probing_since):
            continue
        since = last if last is not None else now - entry_settings.window_seconds
        outcome = queue_outcome(pilot, entry_settings, since, now)
        if outcome is not None:
            yield pilot, outcome


@dataclass(frozen=True, slots=True)
class Probes:
    """A probing entry's probes since probing began: all seen (queued or gone), and those no longer queued."""

    sent: int = 0
    gone: int = 0
    """Finished, or left the queue and not yet in the history read: each used up for good."""


@dataclass(frozen=True)
class Evidence:
    """What one cycle's queue and completed pilots say, per advertised entry (`cycle_evidence`)."""

    outcomes: dict[str, list[str]] = field(default_factory=dict)
    """This cycle's outcomes (GOOD or a cause), for `decide_health`."""
    retracted: dict[str, list[float]] = field(default_factory=dict)
    """When the goods to withdraw were counted: pilots counted good while running whose failure
    (a bad end, a hold) replaces that good."""
    counted: dict[str, float] = field(default_factory=dict)
    """The job ids counted good while running, and when, for the next cycles."""
    probe_ids: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per probing entry, the job ids of its probes seen so far, for the next cycles."""
    probes: dict[str, Probes] = field(default_factory=dict)
    """Per probing entry, its probes so far, for `decide_health`."""


def cycle_evidence(
    pilots: Iterable[Pilot],
    completed: Iterable[CompletedPilot],
    settings: Mapping[str, HealthSettings],
    last: float | None,
    now: float,
    probing: Mapping[str, float] | None = None,
    counted: Mapping[str, float] | None = None,
    probe_ids: Mapping[str, Iterable[str]] | None = None,
    asking: Asking = frozenset(),
) -> Evidence:
    """This cycle's outcomes per advertised entry, and what the next cycles must remember of them.

    `last` None (a first evaluation) looks one window back. `probing` maps
    the entries probing to when probing began: there only the probes'
    outcomes count (`is_probe`); a pilot from before the ban that starts,
    runs or fails now says nothing about the repair. `asking`: where a
    pilot that ran no job counts (`completed_outcome`).

    **One outcome per pilot.** `counted`: the job ids already counted good
    while they ran. Their good end adds nothing; a bad end, or a hold seen
    in the queue, replaces that good (`Evidence.retracted`), and the pilot
    is forgotten (its one outcome is settled; a released pilot that runs
    long again is counted again). Ids older than any entry's
    ``history_seconds`` are forgotten too (their good has left the history).

    **Probes used.** `probe_ids`: per probing entry, its probes seen in
    earlier cycles. With the queued and completed probes added, those no
    longer queued are used up, also one that left the queue but is not yet
    in the history read (`Probes`).
    """
    probing, counted = probing or {}, counted or {}
    found = Evidence()
    keep_from = now - max((entry.history_seconds for entry in settings.values()), default=0.0)
    ended = {done.job_id for done in completed}
    found.counted.update((job, at) for job, at in counted.items() if at >= keep_from and job not in ended)
    for pilot, outcome in _queue_outcomes(pilots, settings, last, now, probing):
        found.outcomes.setdefault(pilot.entry, []).append(outcome)
        if outcome == GOOD:
            found.counted[pilot.job_id] = now
        elif (good_at := found.counted.pop(pilot.job_id, None)) is not None:  # a hold (or late start) after its good
            found.retracted.setdefault(pilot.entry, []).append(good_at)
    for done in completed:
        _add_completed(found, done, settings, probing, counted, asking)
    if probing:
        _add_probes(found, pilots, completed, probing, probe_ids or {})
    return found


def _add_completed(
    found: Evidence,
    done: CompletedPilot,
    settings: Mapping[str, HealthSettings],
    probing: Mapping[str, float],
    counted: Mapping[str, float],
    asking: Asking,
) -> None:
    """A completed pilot's outcome, unless it was counted good while running and ended well."""
    if done.entry not in settings:
        return
    since = probing.get(done.entry)
    if since is not None and not is_probe(done.submitted, since):
        return
    outcome = completed_outcome(done, asking)
    if outcome is None:
        return
    good_at = counted.get(done.job_id)
    if good_at is not None:
        if outcome == GOOD:
            return
        found.retracted.setdefault(done.entry, []).append(good_at)
    found.outcomes.setdefault(done.entry, []).append(outcome)


def _add_probes(
    found: Evidence,
    pilots: Iterable[Pilot],
    completed: Iterable[CompletedPilot],
    probing: Mapping[str, float],
    remembered: Mapping[str, Iterable[str]],
) -> None:
    """Each probing entry's probes seen so far (remembered, queued, completed), and how many are gone."""
    seen = {entry: set(remembered.get(entry, ())) for entry in probing}
    queued: dict[str, set[str]] = {entry: set() for entry in probing}
    for pilot in pilots:
        since = probing.get(pilot.entry)
        if since is not None and is_probe(pilot.submitted, since):
            queued[pilot.entry].add(pilot.job_id)
    for done in completed:
        since = probing.get(done.entry)
        if since is not None and is_probe(done.submitted, since):
            seen[done.entry].add(done.job_id)
    for entry, ids in seen.items():
        ids |= queued[entry]
        found.probe_ids[entry] = frozenset(ids)
        found.probes[entry] = Probes(len(ids), len(ids - queued[entry]))


def probing_since(states: Mapping[str, EntryHealth]) -> dict[str, float]:
    """The entries probing (by the policy or an operator), and since when: what `cycle_evidence` needs."""
    return {name: health.since for name, health in states.items() if health.state is HealthState.PROBING}


def submit_failures(actions: Sequence[Action], results: Sequence[ActResult]) -> dict[str, list[str]]:
    """A `SUBMIT_FAILED` per submission the schedd refused for the entry's sake, per entry.

    `results` pairs with `actions` (`updraft.factory.act.act` returns one
    result per action, in order, or one result alone when the schedd could
    not be located). Only a refusal the schedd answered (`ActResult.refused`)
    can be about the entry, and only in a cycle where the schedd accepted
    another entry's submission: a schedd that refuses every entry (or the
    only one asking) is failing as a whole, which is the factory's trouble.
    A schedd that could not be located or did not answer in time, and a
    description that could not be rendered (template, credential, log
    folder), count against no entry either.
    """
    if len(actions) != len(results):
        return {}
    submits = [(a, r) for a, r in zip(actions, results, strict=True) if isinstance(a, Submit)]
    accepted = {action.entry for action, result in submits if result.submitted and not result.errors}
    found: dict[str, list[str]] = {}
    for action, result in submits:
        if result.refused and accepted - {action.entry}:
            found.setdefault(action.entry, []).append(SUBMIT_FAILED)
    return found


def with_outcomes(
    history: Mapping[str, History], outcomes: Mapping[str, Sequence[str]], at: float
) -> dict[str, History]:
    """The history with `outcomes` added at `at` (after act: the refused submissions)."""
    updated = dict(history)
    for entry, found in outcomes.items():
        if entry in updated:
            updated[entry] = updated[entry].added(found, at)
    return updated


# --------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------


def state_cap(state: HealthState, settings: HealthSettings) -> int | None:
    """Most idle pilots the state allows (probing: most pilots at all); None caps nothing."""
    if state is HealthState.BANNED:
        return 0
    if state is HealthState.DEGRADED:
        return settings.degraded_max_idle
    if state is HealthState.PROBING:
        return settings.probe_count
    return None


def earliest_change(state: HealthState, since: float, settings: HealthSettings) -> float:
    """When a state entered at `since` may change: its minimum time, and for banned the ban time too."""
    wait = settings.min_time_in_state_seconds
    if state is HealthState.BANNED:
        wait = max(wait, settings.ban_seconds)
    return since + wait


_Proposal = tuple[HealthState, str, float]
"""The state the rules ask for, why, and the figure it rests on (a failure fraction, or failed probes)."""


@dataclass(frozen=True, slots=True)
class _ProbeFacts:
    """What a probing entry's cap and reason need beyond its history: its probes so far (None: not
    known this cycle) and whether any request asks for pilots there (None: not known)."""

    probes: Probes | None = None
    asked: bool | None = None

    def sent(self, previous: EntryHealth) -> int | None:
        """Probes sent in the current probing period: none when it begins now; None when not known."""
        if previous.state is not HealthState.PROBING:
            return 0
        return self.probes.sent if self.probes is not None else None

    def waiting(self) -> str:
        """Why no probe has gone out yet, in words."""
        return "no probe sent yet, no pilots requested" if self.asked is False else "no probe sent yet"


_UNKNOWN = _ProbeFacts()


def _propose(
    previous: EntryHealth, history: History, settings: HealthSettings, now: float, evidence: bool, facts: _ProbeFacts
) -> _Proposal:
    """What the rules say, before the minimum time in a state is applied.

    Without `evidence` (the queue was not read) only time moves a state: a
    ban ends. The window then lacks this cycle's outcomes, and unknown is
    never read as zero, so nothing is judged from it. Probing that has sent
    no probe yet says so, and whether any pilots are asked for: without a
    request there is nothing to probe with (docs/entry-health.md).
    """
    state = previous.state
    if state is HealthState.BANNED:
        over = f"ban of {settings.ban_seconds:.0f} s over"
        if facts.asked is False:
            return HealthState.PROBING, f"{over}: {facts.waiting()}", 0.0
        return HealthState.PROBING, f"{over}: sending probe pilots", 0.0
    if not evidence:
        return state, previous.reason, 0.0
    if state is HealthState.PROBING:
        # outcomes stamped in the cycle probing began are the ban's leftovers, not probes
        verdict = _probe_verdict(history.since(previous.since, settings.ignore_causes, strictly=True), settings)
        if verdict[0] is HealthState.PROBING and facts.sent(previous) == 0:
            return verdict[0], f"probing since {timefmt.utc(previous.since)}: {facts.waiting()}", verdict[2]
        return verdict
    window = history.since(now - settings.window_seconds, settings.ignore_causes)
    fraction = window.fraction(settings.min_outcomes)
    seen = f"{window.words()} in the last {settings.window_seconds:.0f} s"
    if state is HealthState.ACTIVE:
        return (HealthState.DEGRADED if fraction >= settings.degrade_fraction else state), seen, fraction
    if fraction >= settings.ban_fraction:
        return HealthState.BANNED, seen, fraction
    if fraction <= settings.recover_fraction and window.good + window.failed >= settings.min_outcomes:
        return HealthState.ACTIVE, f"recovered: {seen}", fraction
    return state, seen, fraction


def _probe_verdict(probes: Tally, settings: HealthSettings) -> _Proposal:
    """A majority of `probe_count` probes decides; until one is reached, probing goes on."""
    majority = settings.probe_count // 2 + 1
    words = f"probes: {probes.words()}"
    if probes.good >= majority:
        return HealthState.ACTIVE, f"{words}: site works again", probes.failed
    if probes.failed >= settings.probe_count - majority + 1:
        return HealthState.BANNED, f"{words}: still failing", probes.failed
    return HealthState.PROBING, f"{words}, waiting for {settings.probe_count}", probes.failed


def _next_review(state: HealthState, since: float, settings: HealthSettings, now: float) -> float | None:
    """The earliest change still ahead; None once the state may change any cycle."""
    earliest = since + settings.min_time_in_state_seconds
    if state is HealthState.BANNED:
        earliest = since + max(settings.min_time_in_state_seconds, settings.ban_seconds)
    return earliest if earliest > now else None


def _by_override(
    previous: EntryHealth, override: Override, settings: HealthSettings, now: float, facts: _ProbeFacts
) -> tuple[EntryHealth, Transition | None]:
    """The operator's state. Probing by an operator counts its probes as the policy's does (`_cap`), and
    says when none can go out for want of a request."""
    state = override.state
    since = previous.since if previous.state is state else now
    reason = f"set by {override.set_by}: {override.reason}"
    if state is HealthState.PROBING and facts.asked is False and facts.sent(previous) == 0:
        reason = f"{reason}; {facts.waiting()}"
    health = EntryHealth(
        previous.entry, state, reason, since, override.until, _cap(previous, state, settings, facts), override
    )
    changed = None
    if previous.state is not state:
        changed = Transition(previous.entry, previous.state, state, health.reason, now, override.set_by)
    return health, changed


def _cap(previous: EntryHealth, state: HealthState, settings: HealthSettings, facts: _ProbeFacts) -> int | None:
    """The state's cap; probing on from the previous cycle: what is left of ``probe_count`` once the
    probes no longer queued are taken off (the previous cap when they are not known this cycle)."""
    if state is not HealthState.PROBING or previous.state is not HealthState.PROBING:
        return state_cap(state, settings)
    if facts.probes is None:
        return previous.cap if previous.cap is not None else settings.probe_count
    return max(0, settings.probe_count - facts.probes.gone)


def _inconclusive(previous: EntryHealth, facts: _ProbeFacts, settings: HealthSettings) -> bool:
    """Whether the policy's probing period is over without a verdict: every one of ``probe_count`` probes
    left the queue, too few of them with an outcome for a majority (removed before they ran, no job
    where none is asked for, an ignored cause, outcomes lost in a crash)."""
    probes = facts.probes
    if previous.state is not HealthState.PROBING or previous.override is not None or probes is None:
        return False
    return probes.gone >= settings.probe_count and probes.sent == probes.gone


def _by_policy(
    previous: EntryHealth,
    history: History,
    settings: HealthSettings,
    now: float,
    evidence: bool,
    facts: _ProbeFacts = _UNKNOWN,
) -> tuple[EntryHealth, Transition | None, tuple[Step, ...]]:
    """The rules' state, unless the minimum time in the current one holds it back (the record says until when)."""
    wanted, reason, figure = _propose(previous, history, settings, now, evidence, facts)
    state, since = previous.state, previous.since
    held: tuple[Step, ...] = ()
    if wanted is not state:
        earliest = earliest_change(state, since, settings)
        if now >= earliest:
            state, since = wanted, now
        elif state is HealthState.BANNED:
            held = (Step("held", earliest, "banned until then"),)
            reason = previous.reason  # why it was banned stays the reason until the ban is over
        else:
            held = (Step("held", earliest, f"{wanted.value} due, not before then"),)
            reason = f"{reason}; {wanted.value} due, held by the minimum time in a state"
    restart = wanted is state and _inconclusive(previous, facts, settings)
    if restart:  # a new probing period: without it the entry would wait at cap 0 for ever
        since, reason = now, f"{reason}; every probe gone without a verdict: probing again"
    if previous.override is not None:
        reason = f"override by {previous.override.set_by} ended; {reason}"
    review = _next_review(state, since, settings, now)
    cap = state_cap(state, settings) if restart else _cap(previous, state, settings, facts)
    step = Step(state.value, figure, reason)
    if (
        state is previous.state
        and reason == previous.reason
        and review == previous.next_review
        and cap == previous.cap
        and previous.override is None
    ):
        return previous, None, (step, *held)  # nothing changed: most entries, most cycles
    health = EntryHealth(previous.entry, state, reason, since, review, cap)
    changed = Transition(previous.entry, previous.state, state, reason, now) if state is not previous.state else None
    return health, changed, (step, *held)


def _switched_off(previous: EntryHealth, now: float) -> tuple[EntryHealth, Transition | None]:
    reason = "health policy off for this entry"
    if previous.state is HealthState.ACTIVE:
        return EntryHealth(previous.entry, HealthState.ACTIVE, reason, previous.since), None
    health = EntryHealth(previous.entry, HealthState.ACTIVE, reason, now)
    return health, Transition(previous.entry, previous.state, HealthState.ACTIVE, reason, now, POLICY)


def decide_entry(
    previous: EntryHealth,
    history: History,
    override: Override | None,
    settings: HealthSettings,
    now: float,
    evidence: bool = True,
    probes: Probes | None = None,
    asked: bool | None = None,
) -> tuple[EntryHealth, Transition | None, History, tuple[Step, ...]]:
    """One entry's new health, the transition if it changed, its history and the record of why.

    `history` already holds this cycle's outcomes; `evidence` False: the
    queue was not read, so only time-based changes happen (`_propose`).
    `probes`: a probing entry's probes so far (None: not known this cycle);
    `asked`: whether a request asks for pilots at the entry (None: not known).
    """
    history = history.pruned(now - settings.history_seconds)
    context = _ProbeFacts(probes, asked) if probes is not None or asked is not None else _UNKNOWN
    if override is not None and override.until > now:
        if override.state is HealthState.ACTIVE and previous.override != override:
            history = EMPTY  # the operator vouched for the repair: old failures are forgotten
        health, changed = _by_override(previous, override, settings, now, context)
        return health, changed, history, (Step("override", override.until, health.reason),)
    if not settings.enabled:
        health, changed = _switched_off(previous, now)
        return health, changed, history, (Step("off", 0, health.reason),)
    health, changed, steps = _by_policy(previous, history, settings, now, evidence, context)
    if previous.state is HealthState.PROBING and health.state is HealthState.ACTIVE:
        history = history.after(previous.since)  # the probes showed the repair: older failures are forgotten
    return health, changed, history, steps


def decide_health(
    previous: Mapping[str, EntryHealth],
    history: Mapping[str, History],
    outcomes: Mapping[str, Sequence[str]],
    overrides: Mapping[str, Override],
    settings: Mapping[str, HealthSettings],
    now: float,
    *,
    evidence: bool = True,
    probes: Mapping[str, Probes] | None = None,
    retracted: Mapping[str, Sequence[float]] | None = None,
    asking: Asking | None = None,
) -> HealthDecision:
    """Every advertised entry's health this cycle (`settings` names them; others are forgotten).

    An entry seen for the first time starts active, since now. `evidence`
    False: the queue could not be read this cycle, so no state changes on
    evidence (bans still end; overrides still apply). `probes`: per probing
    entry, its probes so far (`Evidence.probes`; an entry left out keeps
    its cap). `retracted`: per entry, the goods to withdraw
    (`Evidence.retracted`) before this cycle's outcomes are added.
    `asking`: the requests asking for pilots (`asking_for_pilots`; None: not
    known), so that probing without a request says why no probe goes out.
    """
    probes, retracted = probes or {}, retracted or {}
    requested = None if asking is None else {entry for entry, _frontend, _group in asking}
    health: dict[str, EntryHealth] = {}
    histories: dict[str, History] = {}
    records: dict[str, tuple[Step, ...]] = {}
    transitions: list[Transition] = []
    forgotten = False
    for name in sorted(settings):
        before = previous.get(name) or EntryHealth(name, HealthState.ACTIVE, "no outcomes yet", now)
        found = outcomes.get(name, ())
        entry_history = history.get(name, EMPTY).without_good(retracted.get(name, ())).added(found, now)
        asked = None if requested is None else name in requested
        state, changed, histories[name], records[name] = decide_entry(
            before, entry_history, overrides.get(name), settings[name], now, evidence, probes.get(name), asked
        )
        health[name] = state
        forgotten = forgotten or (histories[name] is EMPTY and entry_history is not EMPTY)
        if changed is not None:
            transitions.append(changed)
    return HealthDecision(health, tuple(transitions), histories, records, forgotten=forgotten)

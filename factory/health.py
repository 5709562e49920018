"""The entry health policy: each advertised entry's state from what its pilots did, decided purely.

Every cycle the service gathers this cycle's *outcomes* per entry
(`observed_outcomes`: pilots the queue shows held, running long enough to
count as healthy, or idle far too long; completed pilots' reports; and,
after act, the submissions the schedd refused, `submit_failures`) and calls
`decide_health` with the previous states, the per-entry history of
outcomes, the operators' overrides and each entry's settings. Nothing here
reads a file or the clock: ``now`` comes in, new states, the transitions
made, the updated history and a record of why come out.

**Outcomes.** `GOOD` is a pilot that ran for ``healthy_after_seconds``
(validation is over by then), or one that ended well with jobs and was
not surely seen running that long (it ran less than two cycles past it).
Every other outcome is a failure with a cause (`CAUSES`). Each outcome is
counted once, in the cycle it happens: a queued pilot's hold, start or slow
start happened at a known moment, and only the moments after the previous evaluation and not after ``now`` are new; the
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
  ``recover_fraction`` (the gap between the two is the hysteresis). Active
  never jumps straight to banned: degraded caps the pilots at risk while
  the evidence grows, and takes at most one minimum time;
- banned ignores evidence (it gets no pilots) and after ``ban_seconds``
  always moves to probing;
- probing sends at most ``probe_count`` pilots and counts only outcomes
  since it began: a majority of ``probe_count`` good -> active, a majority
  failed -> banned again (for another ``ban_seconds``).

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from updraft.factory.completed import CompletedPilot
from updraft.factory.health_model import POLICY, EntryHealth, HealthState, Override, Transition
from updraft.factory.model import IDLE_STATES, Action, Pilot, PilotState, Submit
from updraft.records import Step

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
        """With `outcomes` (GOOD or a cause) happened at `at`, which is no earlier than any kept."""
        if not outcomes:
            return self
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


# --------------------------------------------------------------------------
# Outcomes: what this cycle saw, per entry
# --------------------------------------------------------------------------


def completed_outcome(pilot: CompletedPilot, healthy_after_seconds: float, cycle: float | None) -> str | None:
    """A completed pilot's outcome from its report; None when it says nothing about the site.

    A pilot without a report is most often one the factory removed (excess
    idle, stale): no evidence. A good pilot that a cycle surely saw running
    for ``healthy_after_seconds`` was counted then (`queue_outcome`), so it
    is not again; every other good one counts now. `cycle`: the time since
    the previous evaluation (None: there was none, so nothing was counted).
    """
    report = pilot.report
    if report is None:
        return None
    if not report.ok:
        return _STEP_CAUSES.get(report.failed_step, PILOT_FAILED)
    if report.jobs_run <= 0:
        return NO_JOB
    return None if surely_counted_while_running(pilot, healthy_after_seconds, cycle) else GOOD


def surely_counted_while_running(pilot: CompletedPilot, healthy_after_seconds: float, cycle: float | None) -> bool:
    """Whether the pilot ran so long that a cycle must have seen it running past ``healthy_after_seconds``.

    Neither the pilot's own lifetime nor the history ad says when the queue
    showed it running: the CE's news of a start and of an end reach the
    factory late, by different amounts. So only a run (RemoteWallClockTime)
    two cycles longer than the mark counts as surely seen; a shorter one
    counts again at completion. Counting a good pilot twice costs one
    optimistic outcome; not counting it at all leaves a probing entry
    without its verdict (seen on the lab: probes that ran 42 s, healthy
    after 40 s, left between two cycles and were never counted).
    """
    if cycle is None:
        return False
    return pilot.wall_seconds >= healthy_after_seconds + 2 * cycle


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


def observed_outcomes(
    pilots: Iterable[Pilot],
    completed: Iterable[CompletedPilot],
    settings: Mapping[str, HealthSettings],
    last: float | None,
    now: float,
) -> dict[str, list[str]]:
    """This cycle's outcomes per advertised entry; `last` None (a first evaluation) looks one window back."""
    found: dict[str, list[str]] = {}
    for pilot in pilots:
        entry_settings = settings.get(pilot.entry)
        if entry_settings is None:
            continue
        since = last if last is not None else now - entry_settings.window_seconds
        outcome = queue_outcome(pilot, entry_settings, since, now)
        if outcome is not None:
            found.setdefault(pilot.entry, []).append(outcome)
    cycle = None if last is None else now - last
    for done in completed:
        entry_settings = settings.get(done.entry)
        if entry_settings is None:
            continue
        outcome = completed_outcome(done, entry_settings.healthy_after_seconds, cycle)
        if outcome is not None:
            found.setdefault(done.entry, []).append(outcome)
    return found


def submit_failures(actions: Sequence[Action], errors: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """A `SUBMIT_FAILED` per submission the schedd refused, per entry; `errors` pairs with `actions`.

    `updraft.factory.act.act` returns one result per action, in order (or
    one result alone when the schedd could not be located: that is the
    factory's trouble, not the entry's, and counts against none).
    """
    if len(actions) != len(errors):
        return {}
    found: dict[str, list[str]] = {}
    for action, failed in zip(actions, errors, strict=True):
        if isinstance(action, Submit) and failed:
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


def _propose(previous: EntryHealth, history: History, settings: HealthSettings, now: float) -> _Proposal:
    """What the rules say, before the minimum time in a state is applied."""
    state = previous.state
    if state is HealthState.BANNED:
        return HealthState.PROBING, f"ban of {settings.ban_seconds:.0f} s over: sending probe pilots", 0.0
    if state is HealthState.PROBING:
        # outcomes stamped in the cycle probing began are the ban's leftovers, not probes
        return _probe_verdict(history.since(previous.since, settings.ignore_causes, strictly=True), settings)
    window = history.since(now - settings.window_seconds, settings.ignore_causes)
    fraction = window.fraction(settings.min_outcomes)
    seen = f"{window.words()} in the last {settings.window_seconds:.0f} s"
    if state is HealthState.ACTIVE:
        return (HealthState.DEGRADED if fraction >= settings.degrade_fraction else state), seen, fraction
    if fraction >= settings.ban_fraction:
        return HealthState.BANNED, seen, fraction
    if fraction <= settings.recover_fraction:
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
    previous: EntryHealth, override: Override, settings: HealthSettings, now: float
) -> tuple[EntryHealth, Transition | None]:
    state = override.state
    since = previous.since if previous.state is state else now
    health = EntryHealth(
        previous.entry,
        state,
        f"set by {override.set_by}: {override.reason}",
        since,
        override.until,
        state_cap(state, settings),
        override,
    )
    changed = None
    if previous.state is not state:
        changed = Transition(previous.entry, previous.state, state, health.reason, now, override.set_by)
    return health, changed


def _by_policy(
    previous: EntryHealth, history: History, settings: HealthSettings, now: float
) -> tuple[EntryHealth, Transition | None, tuple[Step, ...]]:
    """The rules' state, unless the minimum time in the current one holds it back (the record says until when)."""
    wanted, reason, figure = _propose(previous, history, settings, now)
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
    if previous.override is not None:
        reason = f"override by {previous.override.set_by} ended; {reason}"
    review, cap = _next_review(state, since, settings, now), state_cap(state, settings)
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
) -> tuple[EntryHealth, Transition | None, History, tuple[Step, ...]]:
    """One entry's new health, the transition if it changed, its history and the record of why.

    `history` already holds this cycle's outcomes.
    """
    history = history.pruned(now - settings.history_seconds)
    if override is not None and override.until > now:
        if override.state is HealthState.ACTIVE and previous.override != override:
            history = EMPTY  # the operator vouched for the repair: old failures are forgotten
        health, changed = _by_override(previous, override, settings, now)
        return health, changed, history, (Step("override", override.until, health.reason),)
    if not settings.enabled:
        health, changed = _switched_off(previous, now)
        return health, changed, history, (Step("off", 0, health.reason),)
    health, changed, steps = _by_policy(previous, history, settings, now)
    return health, changed, history, steps


def decide_health(
    previous: Mapping[str, EntryHealth],
    history: Mapping[str, History],
    outcomes: Mapping[str, Sequence[str]],
    overrides: Mapping[str, Override],
    settings: Mapping[str, HealthSettings],
    now: float,
) -> HealthDecision:
    """Every advertised entry's health this cycle (`settings` names them; others are forgotten).

    An entry seen for the first time starts active, since now.
    """
    health: dict[str, EntryHealth] = {}
    histories: dict[str, History] = {}
    records: dict[str, tuple[Step, ...]] = {}
    transitions: list[Transition] = []
    for name in sorted(settings):
        before = previous.get(name) or EntryHealth(name, HealthState.ACTIVE, "no outcomes yet", now)
        found = outcomes.get(name, ())
        entry_history = history.get(name, EMPTY).added(found, now)
        state, changed, histories[name], records[name] = decide_entry(
            before, entry_history, overrides.get(name), settings[name], now
        )
        health[name] = state
        if changed is not None:
            transitions.append(changed)
    return HealthDecision(health, tuple(transitions), histories, records)

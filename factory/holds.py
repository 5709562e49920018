"""What a held pilot's HoldReason says, in words an operator reads, and whether it is a refusal.

A batch pilot (``grid_resource = batch ...``) is handed to the batch system
by the blahp. When the submit command fails, the grid manager holds the
pilot with HoldReasonCode 0 and the blahp's text, the command's output
squeezed onto one line (its line breaks become ``-``)::

    submission command failed (exit code = 1) (stdout:) (stderr:sbatch: error:
    invalid partition specified: nosuch-sbatch: error: Batch job submission
    failed: Invalid partition name specified-Error from sbatch: )

Code 0 is also what every other grid-manager failure gets, and is
recoverable by default, so the code alone cannot tell a refusal from a
hiccup. The text can: a batch system that answered and said no (no such
partition, more memory than any node has, an unknown account) will say no
again to the same description until the entry's config changes, so such a
pilot is a *refusal*, never worth a release. A submit command that could
not reach its controller (slurmctld down, a timeout) did not refuse
anything: that hold is transient and goes through the ordinary hold policy.

Pure: text in, text out, so the reading is tested with the texts the lab's
Slurm really produced.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from updraft import timefmt
from updraft.factory.model import Pilot, PilotState

SUBMIT_FAILED = "submission command failed"
"""How the blahp starts the reason of a submit command that exited non-zero."""

_STDERR = re.compile(r"\(stderr:(?P<text>.*)\)\s*$", re.DOTALL)
_SBATCH_ERROR = re.compile(r"sbatch: error:\s*(?P<what>.*?)\s*(?=-sbatch: |-Error from |$)", re.DOTALL)

TRANSIENT_WORDS = (
    "unable to contact slurm controller",
    "socket timed out",
    "communication connection failure",
    "zero bytes were transmitted",
    "connection refused",
    "temporarily unable",
    "slurm_persist_conn",
    "munge",
    "try again",
)
"""Submit failures that say the batch system was not reached or not ready, not that it refused.

Lower case; matched anywhere in the command's output. Anything else a submit
command says when it fails is taken at its word: a refusal.
"""

MAX_REASON = 200
"""A readable reason is cut here: it goes into log lines, records and status tables."""


BATCH_REFUSED = "batch_refused"
BATCH_UNREACHABLE = "batch_unreachable"
OTHER = "other"
HOLD_KINDS = (BATCH_REFUSED, BATCH_UNREACHABLE, OTHER)
"""What monitoring counts held pilots by: short, fixed words, never the (site-written) text itself."""


def hold_kind(hold_reason: str) -> str:
    """The batch system refused the pilot, could not be reached to take it, or some other hold."""
    if batch_refusal(hold_reason) is not None:
        return BATCH_REFUSED
    if is_submit_failure(hold_reason):
        return BATCH_UNREACHABLE
    return OTHER


def is_submit_failure(hold_reason: str) -> bool:
    """The blahp could not submit the pilot to the batch system (whatever the cause)."""
    return SUBMIT_FAILED in hold_reason


def batch_refusal(hold_reason: str) -> str | None:
    """The batch system's own words when it refused the pilot for good, else None.

    None as well for a submit that failed only because the batch system
    could not be reached (`TRANSIENT_WORDS`): that one may succeed when
    released.
    """
    if not is_submit_failure(hold_reason):
        return None
    lowered = hold_reason.lower()
    if any(word in lowered for word in TRANSIENT_WORDS):
        return None
    return _cut(f"{_system(hold_reason)} refused the job: {_first_error(hold_reason)}")


def readable_hold(hold_reason: str) -> str:
    """A held pilot's reason as an operator should read it: a refusal in the batch system's words,
    a submit command's first error, or HTCondor's own text, on one line and short."""
    refusal = batch_refusal(hold_reason)
    if refusal is not None:
        return refusal
    if is_submit_failure(hold_reason):
        return _cut(f"{_system(hold_reason)} not reached: {_first_error(hold_reason)}")
    return _cut(" ".join(hold_reason.split()) or "no reason given")


def _system(hold_reason: str) -> str:
    return "Slurm" if "sbatch" in hold_reason else "the batch system"


def _first_error(hold_reason: str) -> str:
    """sbatch's first "error:" line; else the stderr (or the whole reason) on one line."""
    found = _SBATCH_ERROR.search(hold_reason)
    if found and found.group("what"):
        return found.group("what")
    stderr = _STDERR.search(hold_reason)
    text = stderr.group("text") if stderr and stderr.group("text").strip() else hold_reason
    return " ".join(text.replace("-Error from", " Error from").split())


def _cut(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= MAX_REASON else one_line[: MAX_REASON - 3] + "..."


def entry_problems(pilots: Iterable[Pilot]) -> list[str]:
    """One problem line per entry and batch-submit failure among its held pilots, sorted, then one per
    entry whose CE or batch system the grid manager finds down (`unavailable_problems`).

    What the cycle reports besides its own failures: an HPC site whose batch
    system refuses pilots or does not answer is the entry's problem, and an
    operator should read it in `once`, the log and monitoring without
    looking into the schedd. Other holds are the hold policy's business.
    """
    live = list(pilots)
    found = Counter(
        (p.entry, p.hold_reason)
        for p in live
        if p.state is PilotState.HELD and p.hold_kind in (BATCH_REFUSED, BATCH_UNREACHABLE)
    )
    held = [f"entry {entry}: {count} held pilots: {reason}" for (entry, reason), count in sorted(found.items())]
    return held + unavailable_problems(live)


def unavailable_problems(pilots: Iterable[Pilot]) -> list[str]:
    """One line per entry whose CE or batch system the grid manager finds down (GridResourceUnavailableTime),
    with since when: the pilots there wait (or are held) until it answers again."""
    since: dict[str, float] = {}
    count: Counter[str] = Counter()
    for pilot in pilots:
        when = pilot.resource_unavailable_since
        if when is not None and pilot.state is not PilotState.COMPLETED:
            since[pilot.entry] = min(when, since.get(pilot.entry, when))
            count[pilot.entry] += 1
    return [
        f"entry {entry}: the grid manager finds its CE or batch system down since "
        f"{timefmt.utc(when)} ({count[entry]} pilots)"
        for entry, when in sorted(since.items())
    ]

"""An entry's health: the plain records the health policy, the operators' overrides, monitoring and notifiers share.

A factory with hundreds of entries cannot be watched by hand, so each entry
carries a state derived every cycle from what the factory already observes
(submit failures, holds, pilots failing validation or running no job, black
holes, slow starts). The states, from healthy to broken:

- **active**: pilots are sent as requested;
- **degraded**: pilots are still sent, but the entry's idle pilots are capped;
- **banned**: no pilots are sent;
- **probing**: on the way out of banned, a few probe pilots are sent and their
  outcome decides between active and banned again.

An operator may set any state with a reason and an end time (`Override`); it
holds against the policy until it expires. Every change of state is a
`Transition`, which monitoring records and notifiers announce exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

POLICY = "policy"
"""`Transition.by` when the health policy, not an operator, changed the state."""


class HealthState(str, Enum):
    """An entry's health state; the value is what the entry ad and monitoring carry."""

    ACTIVE = "active"
    DEGRADED = "degraded"
    BANNED = "banned"
    PROBING = "probing"


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's state for an entry, holding against the policy until `until`."""

    entry: str
    state: HealthState
    reason: str
    until: float
    """Epoch seconds; after this the policy decides again."""
    set_by: str
    """Who set it: the operator's user name, as the audit log records it."""
    set_at: float


@dataclass(frozen=True, slots=True)
class EntryHealth:
    """One advertised entry's health as this cycle decided it."""

    entry: str
    state: HealthState
    reason: str
    since: float
    """When the entry entered `state`."""
    next_review: float | None = None
    """The earliest time the state may change again (the minimum time in a state, or an override's end);
    None when nothing is pending."""
    cap: int | None = None
    """Most idle pilots the factory keeps queued for the entry, over all frontends; None caps nothing."""
    override: Override | None = None
    """Set when the state is an operator's, not the policy's."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of an entry's state: what monitoring keeps and what notifiers announce."""

    entry: str
    old: HealthState
    new: HealthState
    reason: str
    at: float
    by: str = POLICY
    """`POLICY`, or the operator whose override caused it."""

    @property
    def key(self) -> str:
        """Names this change uniquely, so a notifier never announces it twice, also across restarts."""
        return f"{self.entry}|{self.at:.3f}|{self.old.value}>{self.new.value}"

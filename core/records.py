"""Pieces every decision shares: the step of a decision record, and fair integer sharing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One intermediate value of a decision, with what produced it."""

    name: str
    value: float
    note: str = ""


def share_out(wanted: Sequence[int], cap: int) -> list[int]:
    """Scale whole-number wishes down to sum to `cap`, in proportion.

    Largest remainder: everyone gets the floor of their exact share, and the
    rest go to the largest fractional parts, earlier position first on ties
    (callers pass sorted keys), so the result is deterministic and never
    exceeds any single wish.
    """
    total = sum(wanted)
    if total <= cap:
        return list(wanted)
    cap = max(0, cap)
    shares = [want * cap // total for want in wanted]
    remainders = [want * cap % total for want in wanted]
    left = cap - sum(shares)
    for position in sorted(range(len(wanted)), key=lambda i: (-remainders[i], i))[:left]:
        shares[position] += 1
    return shares

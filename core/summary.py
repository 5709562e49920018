"""One line for many refusals: counts per kind of reason and per publisher, and a few examples.

Two thousand malformed ads must not become two thousand log lines in one
cycle: an operator needs to know how many, why, from whom, and to see one
or two whole; the rest is noise that hides everything else in the log.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

MAX_KINDS = 5
MAX_EXAMPLES = 2
MAX_EXAMPLE_CHARS = 240
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?")


def reason_kind(reason: str) -> str:
    """The reason without the values that vary between ads (quoted text, numbers): what is wrong."""
    return _VARYING.sub("…", reason)


def summarise(what: str, refusals: Iterable[tuple[str, str]], examples: Sequence[str] = ()) -> str | None:
    """One line about `refusals` ((publisher, reason) pairs), or None when there are none.

    For example: "2000 requests refused: 1500x UpdraftReqIdlePilots … is outside …
    (from vo1 1500); 500x ... (from vo2 300, vo3 200); e.g. vo1: UpdraftReqIdlePilots -4 is outside 0..1000000".
    `examples` are shown instead of the first refusals when given (they may say more than the reason).
    """
    items = list(refusals)
    if not items:
        return None
    kinds = Counter(reason_kind(reason) for _, reason in items)
    by_kind: dict[str, Counter[str]] = {}
    for publisher, reason in items:
        by_kind.setdefault(reason_kind(reason), Counter())[publisher] += 1
    parts = [f"{count}x {kind[:120]} (from {_top(by_kind[kind])})" for kind, count in kinds.most_common(MAX_KINDS)]
    if len(kinds) > MAX_KINDS:
        parts.append(f"{len(kinds) - MAX_KINDS} other kind(s) of reason")
    shown = list(examples) or [f"{p[:80]}: {r}" for p, r in items]
    cut = "; ".join(example[:MAX_EXAMPLE_CHARS] for example in shown[:MAX_EXAMPLES])
    return f"{len(items)} {what}: {'; '.join(parts)}; e.g. {cut}"


def _top(publishers: Counter[str]) -> str:
    shown = ", ".join(f"{name[:80]} {count}" for name, count in publishers.most_common(3))
    rest = len(publishers) - 3
    return shown + (f" and {rest} more" if rest > 0 else "")

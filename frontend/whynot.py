"""Why idle jobs get no pilots: each entry's reason for refusing a job shape.

Matching (``updraft.frontend.matching``) only counts jobs it cannot place;
an admin staring at jobs idle for hours needs to know *which* test each
entry failed. This redoes the tests for one shape against every entry, in
matching's order (the match index, then cpus, then ``match_expr``, then
downtime), and names the first that fails. For ``match_expr`` it names the
first top-level ``&&`` term that is not true, which is usually the one
line of the expression to look at.

Pure: the shapes and entries come from one observation; nothing here reads
HTCondor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import classad2

from updraft.frontend.config import FrontendConfig, Group
from updraft.frontend.matching import index_values, job_attrs, lowered
from updraft.frontend.model import EntryAd, JobShape


@dataclass(frozen=True, slots=True)
class EntryVerdict:
    """One entry's answer for one shape: usable, or the test it failed."""

    entry: str
    usable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ShapeVerdict:
    """A group's idle jobs of one shape that no live entry takes, and every entry's reason."""

    group: str
    shape: JobShape
    verdicts: tuple[EntryVerdict, ...]

    @property
    def only_downtime(self) -> bool:
        """Some entry would take these jobs, but every such entry is in downtime."""
        return any(v.reason == DOWNTIME for v in self.verdicts)


DOWNTIME = "matches, but the entry is in downtime"


def conjuncts(text: str) -> tuple[str, ...]:
    """The expression's top-level ``&&`` terms, outside parentheses and string literals.

    A term that is itself parenthesised stays whole: the split is only a
    pointer for the reader, and a wrong split would point at the wrong line.
    """
    terms: list[str] = []
    depth, start, quote, i = 0, 0, "", 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith("&&", i):
            terms.append(text[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    terms.append(text[start:].strip())
    return tuple(term for term in terms if term)


def _shown(value: Any) -> str:
    """ClassAd-ish spelling of an evaluation result (classad2 returns Value.Undefined/Error enums)."""
    if value is True or value is False:
        return str(value).lower()
    name = getattr(value, "name", None)
    return name.lower() if isinstance(name, str) else repr(value)


def _index_refusal(shape: JobShape, entry: EntryAd, group: Group) -> str | None:
    index = group.match_index
    if index is None:
        return None
    wanted = index_values(lowered(shape.attrs).get(index.job_attr.lower()))
    if wanted is None:
        return None
    offered = lowered(entry.attrs).get(index.entry_attr.lower())
    if offered is not None and str(offered).strip() in wanted:
        return None
    return (
        f"the job's {index.job_attr} lists {', '.join(wanted) or 'nothing'}; "
        f"the entry's {index.entry_attr} is {offered!r}"
    )


class _Judge:
    """One group's tests, with its expression and its terms parsed once and each entry's ad built once."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.whole = classad2.ExprTree(group.match_expr)
        self.terms = tuple((term, classad2.ExprTree(term)) for term in conjuncts(group.match_expr))
        self.entry_ads: dict[str, classad2.ClassAd] = {}

    def verdict(self, shape: JobShape, shape_ad: classad2.ClassAd, entry: EntryAd) -> EntryVerdict:
        """The first of matching's tests that this entry fails for this shape, or usable."""
        refusal = _index_refusal(shape, entry, self.group)
        if refusal is None and shape.cpus > entry.cpus_per_pilot:
            refusal = f"the job asks {shape.cpus} cpus; the entry's pilots have {entry.cpus_per_pilot} per node"
        if refusal is None:
            refusal = self._expression_refusal(shape_ad, entry)
        if refusal is None and entry.in_downtime:
            refusal = DOWNTIME
        return EntryVerdict(entry=entry.key, usable=refusal is None, reason=refusal or "usable")

    def _expression_refusal(self, shape_ad: classad2.ClassAd, entry: EntryAd) -> str | None:
        entry_ad = self.entry_ads.get(entry.key)
        if entry_ad is None:
            entry_ad = self.entry_ads[entry.key] = classad2.ClassAd(dict(entry.attrs))
        answer = self.whole.eval(shape_ad, entry_ad)
        if answer is True:
            return None
        for text, term in self.terms:
            value = term.eval(shape_ad, entry_ad)
            if value is not True:
                return f"match_expr term `{text}` is {_shown(value)}"
        return f"match_expr is {_shown(answer)}"


def entry_verdict(shape: JobShape, entry: EntryAd, group: Group) -> EntryVerdict:
    """The first of matching's tests that this entry fails for this shape, or usable."""
    return _Judge(group).verdict(shape, classad2.ClassAd(job_attrs(shape)), entry)


def refused_shapes(
    shapes: Iterable[JobShape], entries: Sequence[EntryAd], config: FrontendConfig, group: str | None = None
) -> list[ShapeVerdict]:
    """Shapes with idle jobs that no live entry takes, per group, each with every entry's reason."""
    ordered = sorted(entries, key=lambda e: e.key)
    judges: dict[str, _Judge] = {}
    found = []
    for shape in shapes:
        if not shape.idle or (group is not None and shape.group != group):
            continue
        group_cfg = config.groups.get(shape.group)
        if group_cfg is None:
            continue
        judge = judges.get(shape.group)
        if judge is None:
            judge = judges[shape.group] = _Judge(group_cfg)
        shape_ad = classad2.ClassAd(job_attrs(shape))
        verdicts = tuple(judge.verdict(shape, shape_ad, entry) for entry in ordered)
        if not any(v.usable for v in verdicts):
            found.append(ShapeVerdict(shape.group, shape, verdicts))
    return sorted(found, key=lambda v: (v.group, -v.shape.idle, v.shape.schedd))


def _attrs_text(attrs: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} = {value!r}" for name, value in sorted(attrs.items(), key=lambda kv: kv[0].lower()))


def describe(verdict: ShapeVerdict) -> str:
    """A paragraph per shape: what the jobs ask for, then each entry's reason."""
    shape = verdict.shape
    where = "match only entries in downtime" if verdict.only_downtime else "match no entry"
    lines = [
        f"group {verdict.group}: {shape.idle} idle job(s) on {shape.schedd} {where}",
        f"  they ask: {_attrs_text(job_attrs(shape))}",
    ]
    if not verdict.verdicts:
        lines.append("  no entry is advertised to this frontend")
    lines.extend(f"  {v.entry}: {v.reason}" for v in verdict.verdicts)
    return "\n".join(lines)

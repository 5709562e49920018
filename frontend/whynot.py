"""Why idle jobs get no pilots: each entry's reason for refusing a job shape.

Matching (``updraft.frontend.matching``) only counts jobs it cannot place;
an admin staring at jobs idle for hours needs to know *which* test each
entry failed. This redoes the tests for one shape against every entry, in
matching's order, and names the first that fails:

1. the match index (only where matching uses it);
2. cpus;
3. ``match_expr``: its first top-level ``&&`` term that is not true;
4. the job's own Requirements against the entry's prospective slot: the
   first term shown false, with the values it compared
   ("TARGET.Memory >= RequestMemory: 2048 >= 4000000 is false");
5. the group's ``pilot_start`` against the job, likewise;
6. downtime, then the entry's advertised health: banned (since when, why).

The same term machinery as matching's (`updraft.frontend.terms`) decides,
so an explanation never disagrees with the plan. Pure: the shapes, entries
and slots come from one observation; nothing here reads HTCondor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import classad2

from updraft.condor import Expression
from updraft.frontend.config import FrontendConfig, Group
from updraft.frontend.matching import GroupRules, group_rules, index_tokens, job_attrs, merge_shapes
from updraft.frontend.model import AdvertisedHealth, EntryAd, JobShape
from updraft.frontend.prospective import prospective_slots
from updraft.frontend.terms import (
    Conjunction,
    KnownNames,
    Verdict,
    classad_of,
    compile_conjunction,
    expression_text,
    judge_term,
    lowered,
    shown,
    split_conjuncts,
    strip_parentheses,
    why_false,
)


@dataclass(frozen=True, slots=True)
class EntryVerdict:
    """One entry's answer for one shape: usable, or the test it failed."""

    entry: str
    usable: bool
    reason: str
    closed: bool = False
    """It would take the shape, but takes no pilots: in downtime or banned."""


@dataclass(frozen=True, slots=True)
class ShapeVerdict:
    """A group's idle jobs of one shape that no live entry takes, and every entry's reason."""

    group: str
    shape: JobShape
    verdicts: tuple[EntryVerdict, ...]

    @property
    def only_downtime(self) -> bool:
        """Some entry would take these jobs, but every such entry is in downtime or banned."""
        return any(v.closed for v in self.verdicts)


DOWNTIME = "matches, but the entry is in downtime"


def banned_reason(health: AdvertisedHealth) -> str:
    """Why a banned entry takes nothing: since when and the factory's reason."""
    return f"matches, but the entry is {health.described()}"


def conjuncts(text: str) -> tuple[str, ...]:
    """The expression's top-level ``&&`` terms (the whole text when a top-level ``||`` forbids splitting)."""
    return split_conjuncts(text)


def _index_refusal(shape_low: Mapping[str, Any], entry: EntryAd, rules: GroupRules) -> str | None:
    """Only where matching uses the index: the job lists values, and the entry's is not one of them."""
    index = rules.index
    if index is None:
        return None
    wanted = index_tokens(shape_low.get(index.job_attr.lower()), index.fold_case)
    offered = lowered(entry.attrs).get(index.entry_attr.lower())
    if wanted is None or not isinstance(offered, str):
        return None
    if (offered.lower() if index.fold_case else offered) in wanted:
        return None
    return (
        f"the job's {index.job_attr} lists {', '.join(wanted) or 'nothing'}; "
        f"the entry's {index.entry_attr} is {offered!r}"
    )


def _first_false(
    conjunction: Conjunction, my_attrs: Mapping[str, Any], target_attrs: Mapping[str, Any]
) -> tuple[str | None, tuple[str, ...]]:
    """The first term shown false (with its values), and the terms left unknown (they refuse nothing)."""
    my, target = classad_of(my_attrs), classad_of(target_attrs)
    known = KnownNames(frozenset(lowered(my_attrs)), frozenset(lowered(target_attrs)))
    unknown: list[str] = []
    for term in conjunction.terms:
        verdict = judge_term(term, my, target, known)
        if verdict is Verdict.FALSE:
            return why_false(term, my, target), tuple(unknown)
        if verdict is Verdict.UNKNOWN:
            unknown.append(strip_parentheses(term.text))
    return None, tuple(unknown)


@dataclass
class _Judge:
    """One group's tests, with its expressions parsed once and each entry's ads built once."""

    group: Group
    rules: GroupRules
    slots: Mapping[str, Mapping[str, Any]]
    entry_ads: dict[str, classad2.ClassAd] = field(default_factory=dict)
    requirements: dict[str, Conjunction] = field(default_factory=dict)

    def verdict(self, shape: JobShape, attrs: Mapping[str, Any], entry: EntryAd) -> EntryVerdict:
        """The first of matching's tests that this entry fails for this shape, or usable."""
        refusal = _index_refusal(lowered(attrs), entry, self.rules)
        if refusal is None and shape.cpus > entry.cpus_per_pilot:
            refusal = f"the job asks {shape.cpus} cpus; the entry's pilots have {entry.cpus_per_pilot} per node"
        if refusal is None:
            refusal = self._expression_refusal(attrs, entry)
        if refusal is None:
            refusal = self._requirements_refusal(attrs, entry)
        closed = refusal is None and entry.takes_no_pilots
        if closed:
            refusal = DOWNTIME if entry.in_downtime or entry.health is None else banned_reason(entry.health)
        return EntryVerdict(entry=entry.key, usable=refusal is None, reason=refusal or "usable", closed=closed)

    def _expression_refusal(self, attrs: Mapping[str, Any], entry: EntryAd) -> str | None:
        entry_ad = self.entry_ads.get(entry.key)
        if entry_ad is None:
            entry_ad = self.entry_ads[entry.key] = classad_of(entry.attrs)
        shape_ad = classad_of(attrs)
        answer = self.rules.match.expr.eval(shape_ad, entry_ad)
        if answer is True:
            return None
        for term in self.rules.match.terms:
            value = term.expr.eval(shape_ad, entry_ad)
            if value is not True:
                return f"match_expr term `{strip_parentheses(term.text)}` is {shown(value)}"
        return f"match_expr is {shown(answer)}"

    def _requirements_refusal(self, attrs: Mapping[str, Any], entry: EntryAd) -> str | None:
        if not self.rules.requirements:
            return None
        slot = self.slots.get(entry.key, {})
        conjunction = self._requirements_of(attrs)
        if conjunction is not None:
            false, _ = _first_false(conjunction, attrs, slot)
            if false is not None:
                return f"the job's Requirements on the entry's pilots: {false}"
        if self.rules.start is not None:
            false, _ = _first_false(self.rules.start, slot, attrs)
            if false is not None:
                return f"the group's pilot_start refuses the job: {false}"
        return None

    def _requirements_of(self, attrs: Mapping[str, Any]) -> Conjunction | None:
        text = expression_text(lowered(attrs).get("requirements"))
        if text is None:
            return None
        found = self.requirements.get(text)
        if found is None:
            found = self.requirements[text] = compile_conjunction(text)
        return found


def entry_verdict(
    shape: JobShape, entry: EntryAd, group: Group, slots: Mapping[str, Mapping[str, Any]] | None = None
) -> EntryVerdict:
    """The first of matching's tests that this entry fails for this shape, or usable."""
    slots = slots if slots is not None else prospective_slots([entry], ())
    return _Judge(group, group_rules(group), slots).verdict(shape, job_attrs(shape), entry)


def refused_shapes(
    shapes: Iterable[JobShape],
    entries: Sequence[EntryAd],
    config: FrontendConfig,
    group: str | None = None,
    slots: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[ShapeVerdict]:
    """Shapes with idle jobs that no live entry takes, per group (identical shapes of several schedds
    as one), each with every entry's reason. `slots`: the prospective slots by entry key
    (`updraft.frontend.prospective.prospective_slots`); None: the entries' own descriptions."""
    ordered = sorted(entries, key=lambda e: e.key)
    slots = slots if slots is not None else prospective_slots(ordered, ())
    judges: dict[str, _Judge] = {}
    found = []
    for shape in merge_shapes(shapes):
        if not shape.idle or (group is not None and shape.group != group):
            continue
        group_cfg = config.groups.get(shape.group)
        if group_cfg is None:
            continue
        judge = judges.get(shape.group)
        if judge is None:
            judge = judges[shape.group] = _Judge(group_cfg, group_rules(group_cfg), slots)
        attrs = job_attrs(shape)
        verdicts = tuple(judge.verdict(shape, attrs, entry) for entry in ordered)
        if not any(v.usable for v in verdicts):
            found.append(ShapeVerdict(shape.group, shape, verdicts))
    return sorted(found, key=lambda v: (v.group, -v.shape.idle, v.shape.schedd))


def _attrs_text(attrs: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{name} = {value.text if isinstance(value, Expression) else repr(value)}"
        for name, value in sorted(attrs.items(), key=lambda kv: kv[0].lower())
    )


def describe(verdict: ShapeVerdict) -> str:
    """A paragraph per shape: what the jobs ask for, then each entry's reason."""
    shape = verdict.shape
    where = "match only entries in downtime or banned" if verdict.only_downtime else "match no entry"
    lines = [
        f"group {verdict.group}: {shape.idle} idle job(s) on {shape.schedd} {where}",
        f"  they ask: {_attrs_text(job_attrs(shape))}",
    ]
    if not verdict.verdicts:
        lines.append("  no entry is advertised to this frontend")
    lines.extend(f"  {v.entry}: {v.reason}" for v in verdict.verdicts)
    return "\n".join(lines)

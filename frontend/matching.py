"""Which factory entries suit which queued jobs, and how many pilots that makes.

A group's ``match_expr`` is a ClassAd expression with MY = a job shape and
TARGET = a factory entry. Evaluating it for every (shape, entry) pair would
cost shapes x entries ClassAd evaluations (about 10 us each), which is far
too slow for thousands of both. Three things keep the work small:

- **shapes carry counts**, so a million identical jobs cost one evaluation;
- **classes**: the expression can only see the attributes it references, so
  shapes (entries) that agree on those attributes must get the same answer
  and share one evaluation per pair of classes;
- **the match index** (optional) compares a shape only with the entries its
  job attribute lists, e.g. ``DESIRED_Sites`` against ``GLIDEIN_Site``.

Everything here is pure: plain data in, plain data out, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import classad2

# Importing the HTCondor bindings registers HTCondor's own ClassAd functions
# (stringListMember, stringListIMember, ...): without it those evaluate to
# error and every realistic match expression would match nothing.
import htcondor2  # noqa: F401

from updraft.frontend.config import Group, MatchIndex
from updraft.frontend.model import EntryAd, JobShape

_DYNAMIC_LOOKUP = re.compile(r"\beval\s*\(", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class EntryDemand:
    """The jobs of one group that one entry could run, after the equal split.

    Counts are floats because a shape matching k entries gives each 1/k of
    its jobs; pilots are pilot-equivalents (jobs x job cpus / pilot cores, all nodes).
    """

    entry: EntryAd
    idle_jobs: float
    old_idle_jobs: float
    running_jobs: float
    idle_pilots_needed: float
    old_idle_pilots: float
    requirements: frozenset[tuple[int, int]]
    """(cpus, memory_mb) of every matched shape with idle jobs: what an idle slot must fit."""
    shapes: int


@dataclass(frozen=True, slots=True)
class GroupMatch:
    """One group's jobs spread over the entries that suit them."""

    group: str
    demands: Mapping[str, EntryDemand]
    """By entry key; only entries at least one shape matched."""
    unmatched: int
    """Idle jobs no entry matched (too-big ones included)."""
    in_downtime: int
    """Idle jobs whose matching entries are all in downtime."""
    too_big: int
    """Idle jobs left unmatched only because every entry whose expression
    matched them has fewer cpus per pilot than they ask for."""
    evaluations: int
    """ClassAd evaluations done: what classes and the index save shows here."""


@dataclass(frozen=True, slots=True)
class MatchRule:
    """A parsed match expression and the attribute names it can see (lowercase)."""

    expr: classad2.ExprTree
    my_names: tuple[str, ...]
    target_names: tuple[str, ...]
    shareable: bool
    """False when eval() may reach attributes no static scan can see."""


def compile_rule(text: str) -> MatchRule:
    """Parse once per group and find which attributes can change the answer.

    classad2 reports ``MY.x`` as plain ``x``, and an unqualified name falls
    back to TARGET when MY lacks it, so plain names count for both sides:
    an entry class then also keys on (usually absent) job attribute names,
    which costs nothing and can never merge entries that differ.
    """
    expr = classad2.ExprTree(text)
    my_names: set[str] = set()
    target_names: set[str] = set()
    for ref in classad2.ClassAd().externalRefs(expr):
        scope, _, rest = ref.partition(".")
        if rest and scope.lower() == "target":
            target_names.add(rest.split(".")[0].lower())
        elif rest and scope.lower() == "my":
            my_names.add(rest.split(".")[0].lower())
        else:
            my_names.add(scope.lower())
            target_names.add(scope.lower())
    return MatchRule(
        expr=expr,
        my_names=tuple(sorted(my_names)),
        target_names=tuple(sorted(target_names)),
        shareable=_DYNAMIC_LOOKUP.search(text) is None,
    )


def _value_key(value: Any) -> Any:
    """A hashable stand-in that differs whenever ClassAd evaluation could differ.

    The type is part of the key (1, 1.0 and true compare equal in Python but
    not under ``=?=``). An expression-valued attribute may reference anything,
    so it gets a unique key and never shares.
    """
    if isinstance(value, (str, int, float, bool)) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_value_key(item) for item in value))
    if isinstance(value, Mapping):
        return ("ad", tuple(sorted((str(k).lower(), _value_key(v)) for k, v in value.items())))
    return object()


def lowered(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """ClassAd attribute names are case-insensitive; Python dict keys are not."""
    return {name.lower(): value for name, value in attrs.items()}


def _class_key(lowered: Mapping[str, Any], names: Sequence[str], shareable: bool) -> Any:
    if not shareable:
        return object()
    return tuple(_value_key(lowered.get(name)) for name in names)


def job_attrs(shape: JobShape) -> dict[str, Any]:
    """The shape's attributes as its MY ad: RequestCpus/RequestMemory filled from
    the shape when the schedd did not project them, so expressions can use them."""
    attrs = dict(shape.attrs)
    present = {name.lower() for name in attrs}
    if "requestcpus" not in present:
        attrs["RequestCpus"] = shape.cpus
    if "requestmemory" not in present:
        attrs["RequestMemory"] = shape.memory_mb
    return attrs


def index_values(value: Any) -> tuple[str, ...] | None:
    """The values a job's index attribute allows; None when it says nothing.

    A string is a comma-separated list (``"Site1, Site2"``); a list is taken
    element-wise; any other value is one value. Comparison is exact after
    stripping blanks, like stringListMember. An empty list allows nothing:
    the job named its sites and named none.
    """
    if value is None:
        return None
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = (value,)
    return tuple(dict.fromkeys(text for text in (str(item).strip() for item in items) if text))


ClassGroup = tuple[int, tuple[int, ...]]
"""An entry class id and the indexes of its entries within one candidate set."""


def _group_by_class(indexes: Iterable[int], class_of: Sequence[int]) -> tuple[ClassGroup, ...]:
    members: dict[int, list[int]] = {}
    for index in indexes:
        members.setdefault(class_of[index], []).append(index)
    return tuple((cls, tuple(found)) for cls, found in members.items())


@dataclass(frozen=True, slots=True)
class _EntryTable:
    """The entries pre-sorted once per group: classes, and candidate sets per index value."""

    entries: tuple[EntryAd, ...]
    class_of: tuple[int, ...]
    class_ads: tuple[dict[str, Any], ...]
    """One representative attribute dict per class (its ClassAd is built lazily)."""
    class_cpus: tuple[int, ...]
    everything: tuple[ClassGroup, ...]
    by_value: Mapping[str, tuple[ClassGroup, ...]]
    """Index value -> the entries carrying it; empty without a match index."""


def _build_entry_table(entries: Sequence[EntryAd], rule: MatchRule, index: MatchIndex | None) -> _EntryTable:
    """One pass over the entries: class keys, and the entries under each index value."""
    class_ids: dict[Any, int] = {}
    class_of: list[int] = []
    class_ads: list[dict[str, Any]] = []
    class_cpus: list[int] = []
    indexed: dict[str, list[int]] = {}
    wanted = index.entry_attr.lower() if index else None
    for position, entry in enumerate(entries):
        by_lower_name = lowered(entry.attrs)
        key = (entry.cpus_per_pilot, _class_key(by_lower_name, rule.target_names, rule.shareable))
        if key not in class_ids:
            class_ids[key] = len(class_ads)
            class_ads.append(dict(entry.attrs))
            class_cpus.append(entry.cpus_per_pilot)
        class_of.append(class_ids[key])
        value = by_lower_name.get(wanted) if wanted else None
        if value is not None:
            indexed.setdefault(str(value).strip(), []).append(position)
    return _EntryTable(
        entries=tuple(entries),
        class_of=tuple(class_of),
        class_ads=tuple(class_ads),
        class_cpus=tuple(class_cpus),
        everything=_group_by_class(range(len(entries)), class_of),
        by_value={value: _group_by_class(found, class_of) for value, found in indexed.items()},
    )


class _Evaluator:
    """Evaluates the rule once per (shape class, entry class) and remembers the answer."""

    __slots__ = ("answers", "entry_ads", "evaluations", "rule", "shape_ads", "shape_classes", "table")

    def __init__(self, rule: MatchRule, table: _EntryTable) -> None:
        self.rule = rule
        self.table = table
        self.shape_classes: dict[Any, int] = {}
        self.shape_ads: list[classad2.ClassAd] = []
        self.entry_ads: dict[int, classad2.ClassAd] = {}
        self.answers: dict[tuple[int, int], bool] = {}
        self.evaluations = 0

    def shape_class(self, attrs: Mapping[str, Any]) -> int:
        key = _class_key(lowered(attrs), self.rule.my_names, self.rule.shareable)
        found = self.shape_classes.get(key)
        if found is None:
            found = self.shape_classes[key] = len(self.shape_ads)
            self.shape_ads.append(classad2.ClassAd(dict(attrs)))
        return found

    def matches(self, shape_cls: int, entry_cls: int) -> bool:
        pair = (shape_cls, entry_cls)
        answer = self.answers.get(pair)
        if answer is None:
            answer = self.answers[pair] = self._evaluate(shape_cls, entry_cls)
        return answer

    def _evaluate(self, shape_cls: int, entry_cls: int) -> bool:
        """Only a boolean true is a match: undefined, error, strings and numbers are not.

        classad2 returns Python True for a true boolean result (also for
        ``1 && 1``), so identity with True is exactly the ClassAd truth test
        HTCondor's matchmaking uses for booleans, without coercing numbers.
        """
        entry_ad = self.entry_ads.get(entry_cls)
        if entry_ad is None:
            entry_ad = self.entry_ads[entry_cls] = classad2.ClassAd(self.table.class_ads[entry_cls])
        self.evaluations += 1
        return self.rule.expr.eval(self.shape_ads[shape_cls], entry_ad) is True


def _candidates(attrs: Mapping[str, Any], table: _EntryTable, index: MatchIndex | None) -> Iterable[ClassGroup]:
    """The entries worth comparing: all of them, or only those the job's index attribute lists."""
    if index is None:
        return table.everything
    wanted = index_values(lowered(attrs).get(index.job_attr.lower()))
    if wanted is None:
        return table.everything
    return [group for value in wanted for group in table.by_value.get(value, ())]


class _Totals:
    """Per-entry running sums while shapes are spread (lists: this is the hot loop)."""

    __slots__ = ("idle", "old_idle", "old_pilots", "pilots", "requirements", "running", "shapes")

    def __init__(self, size: int) -> None:
        self.idle = [0.0] * size
        self.old_idle = [0.0] * size
        self.running = [0.0] * size
        self.pilots = [0.0] * size
        self.old_pilots = [0.0] * size
        self.shapes = [0] * size
        self.requirements: list[set[tuple[int, int]] | None] = [None] * size

    def spread(self, shape: JobShape, targets: Sequence[int], entries: Sequence[EntryAd]) -> None:
        """Equal split: without knowing where the negotiator will send each job,
        1/k per matching entry is the unbiased guess, and it keeps totals exact."""
        share = 1.0 / len(targets)
        idle, old_idle = shape.idle * share, shape.old_idle * share
        running = shape.running * share
        need = (shape.cpus, shape.memory_mb)
        for target in targets:
            per_pilot = shape.cpus / max(1, entries[target].cores_per_pilot)
            self.idle[target] += idle
            self.old_idle[target] += old_idle
            self.running[target] += running
            self.pilots[target] += idle * per_pilot
            self.old_pilots[target] += old_idle * per_pilot
            self.shapes[target] += 1
            if shape.idle:
                found = self.requirements[target]
                if found is None:
                    found = self.requirements[target] = set()
                found.add(need)

    def demands(self, entries: Sequence[EntryAd]) -> dict[str, EntryDemand]:
        return {
            entry.key: EntryDemand(
                entry=entry,
                idle_jobs=self.idle[i],
                old_idle_jobs=self.old_idle[i],
                running_jobs=self.running[i],
                idle_pilots_needed=self.pilots[i],
                old_idle_pilots=self.old_pilots[i],
                requirements=frozenset(self.requirements[i] or ()),
                shapes=self.shapes[i],
            )
            for i, entry in enumerate(entries)
            if self.shapes[i]
        }


@dataclass(slots=True)
class _Outcome:
    """Per-group counts of jobs that get no pilots, and why."""

    unmatched: int = 0
    in_downtime: int = 0
    too_big: int = 0


def _matching_entries(
    shape: JobShape, shape_cls: int, groups: Iterable[ClassGroup], evaluator: _Evaluator
) -> tuple[list[int], list[int]]:
    """Entries the shape matches, and entry classes refused only for lack of cpus.

    The cpus test is free and runs first, so entries too small never cost an
    evaluation; the refused classes are only evaluated later if the shape
    ends up unmatched, to tell "too big" from "nothing suits it".
    """
    matched: list[int] = []
    too_small: list[int] = []
    cpus = evaluator.table.class_cpus
    for cls, members in groups:
        if shape.cpus > cpus[cls]:
            too_small.append(cls)
        elif evaluator.matches(shape_cls, cls):
            matched.extend(members)
    return matched, too_small


def _place_shape(
    shape: JobShape, index: MatchIndex | None, evaluator: _Evaluator, totals: _Totals, outcome: _Outcome
) -> None:
    """Spread one shape over live matching entries; downtime ones only get it when nothing else does.

    Splitting over downtime entries too would strand a share of the jobs
    where no pilot can be requested, even though live entries could run them.
    """
    table = evaluator.table
    shape_cls = evaluator.shape_class(job_attrs(shape))
    candidates = _candidates(shape.attrs, table, index)
    matched, too_small = _matching_entries(shape, shape_cls, candidates, evaluator)
    live = [i for i in matched if not table.entries[i].in_downtime]
    if live:
        totals.spread(shape, live, table.entries)
    elif matched:
        totals.spread(shape, matched, table.entries)
        outcome.in_downtime += shape.idle
    else:
        outcome.unmatched += shape.idle
        if any(evaluator.matches(shape_cls, cls) for cls in too_small):
            outcome.too_big += shape.idle


def match(shapes: Iterable[JobShape], entries: Sequence[EntryAd], group_name: str, group_cfg: Group) -> GroupMatch:
    """Spread one group's job shapes over the entries its match rule accepts.

    The caller passes only this group's shapes. Cost is one evaluation per
    distinct (shape class, entry class) pair among index candidates, plus
    O(candidates) bookkeeping per shape; the number of jobs never matters.
    """
    rule = compile_rule(group_cfg.match_expr)
    table = _build_entry_table(entries, rule, group_cfg.match_index)
    evaluator = _Evaluator(rule, table)
    totals = _Totals(len(table.entries))
    outcome = _Outcome()
    for shape in shapes:
        _place_shape(shape, group_cfg.match_index, evaluator, totals, outcome)
    return GroupMatch(
        group=group_name,
        demands=totals.demands(table.entries),
        unmatched=outcome.unmatched,
        in_downtime=outcome.in_downtime,
        too_big=outcome.too_big,
        evaluations=evaluator.evaluations,
    )

"""Which factory entries suit which queued jobs, and how many pilots that makes.

A job shape goes to an entry when three things hold, as the negotiator
will later find them:

- the group's ``match_expr`` (MY = the shape, TARGET = the entry ad);
- the job's own ``Requirements`` against the slot the entry's pilots will
  offer (`updraft.frontend.prospective`), unless the group turns it off;
- the group's ``pilot_start`` (MY = that slot, TARGET = the shape).

Requirements and START are judged term by term (`updraft.frontend.terms`):
only a term shown false on attributes both sides describe refuses a shape;
one that reads an attribute nobody advertised gives the benefit of the
doubt (the idle-pilot feedback catches what no ad predicts).

Evaluating every pair would cost shapes x entries ClassAd evaluations.
What keeps the work small:

- **shapes carry counts**, and identical shapes from different schedds are
  merged first, so a million jobs in twenty schedds are matched once per
  distinct shape;
- **classes**: an expression sees only the attributes it reads, so shapes
  (entries) that agree on those share one evaluation per pair of classes,
  and entries that agree on everything matching reads are handled as one;
- **the match index** compares a shape only with the entries its job
  attribute lists, and only when ``match_expr`` provably implies that
  (`plan_index`); the implied term is then known true and not evaluated.

Everything here is pure: plain data in, plain data out, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import classad2

from updraft.frontend.config import Group, MatchIndex
from updraft.frontend.model import EntryAd, JobShape, shape_key
from updraft.frontend.prospective import prospective_slots
from updraft.frontend.terms import (
    Conjunction,
    KnownNames,
    Term,
    Verdict,
    classad_of,
    compile_conjunction,
    expression_text,
    is_number,
    judge_term,
    lowered,
    strip_parentheses,
    value_key,
)

__all__ = ["EntryDemand", "GroupMatch", "GroupRules", "IndexPlan", "group_rules", "job_attrs", "match"]

_ABSENT = ("absent",)
"""The class-key value of an attribute an ad does not have (differs from every value's key)."""
_NO_SIZES: frozenset[tuple[int, int]] = frozenset()
"""An entry no watched slot needs sizes for (`EntryDemand.requirements`): one shared empty set."""

_INDEX_TERM = re.compile(
    r"^stringList(?P<fold>I?)Member\s*\(\s*TARGET\s*\.\s*(?P<entry>\w+)\s*,\s*(?:MY\s*\.\s*)?(?P<job>\w+)\s*\)$",
    re.IGNORECASE,
)
_LIST_SEPARATORS = re.compile(r"[\s,]+")
"""stringListMember's default delimiters: commas and any whitespace."""


class EntryDemand(NamedTuple):
    """The jobs of one group that one entry could run, after the equal split.

    Counts are floats because a shape matching k entries gives each 1/k of
    its jobs; pilots are pilot-equivalents (jobs x job cpus / pilot cores, all nodes).
    A named tuple: one is built per entry with demand, thousands a cycle.
    """

    entry: EntryAd
    idle_jobs: float
    old_idle_jobs: float
    running_jobs: float
    idle_pilots_needed: float
    old_idle_pilots: float
    requirements: frozenset[tuple[int, int]]
    """(cpus, memory_mb) of every matched shape with idle jobs: what an idle slot must fit. Only for
    watched entries (`match`'s `watch`: those with idle slots); empty elsewhere."""
    shapes: int


@dataclass(frozen=True, slots=True)
class GroupMatch:
    """One group's jobs spread over the entries that suit them."""

    group: str
    demands: Mapping[str, EntryDemand]
    """By entry key; only entries at least one shape matched."""
    unmatched: int
    """Idle jobs no entry matched (too-big and unrunnable ones included)."""
    in_downtime: int
    """Idle jobs whose matching entries all take no pilots: in downtime or banned (`EntryAd.takes_no_pilots`)."""
    too_big: int
    """Idle jobs left unmatched only because every entry whose expression
    matched them has fewer cpus per pilot than they ask for."""
    evaluations: int
    """ClassAd evaluations done: what classes and the index save shows here."""
    unrunnable: int = 0
    """Idle jobs some entry's ``match_expr`` accepts whose own Requirements (or the group's
    pilot_start) are false on every such entry's pilots."""
    shapes: int = 0
    """Distinct shapes matched, after merging identical ones from different schedds."""
    placed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Entry key -> keys (`shape_key`) of the shapes with idle jobs placed on it."""
    keyed: Mapping[str, tuple[JobShape, int]] = field(default_factory=dict)
    """The shapes with idle jobs whose key matching worked out (all of them when `excluded` was given;
    else those placed on a watched entry), by `shape_key`, with their idle jobs: what the feedback needs."""


# --------------------------------------------------------------------------
# The group's rules, compiled once per cycle
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """A match index ``match_expr`` provably implies: its term is known true for every candidate."""

    job_attr: str
    entry_attr: str
    term: int
    """Position of the implied term among ``match_expr``'s terms."""
    fold_case: bool
    """stringListIMember: values compared without case."""


@dataclass(frozen=True, slots=True)
class GroupRules:
    """A group's expressions, parsed, and whether its match index may be used."""

    match: Conjunction
    requirements: bool
    start: Conjunction | None
    index: IndexPlan | None
    index_problem: str | None
    """Why a configured index is not used (matching then compares every entry), for check-config."""
    indexed_my_names: tuple[str, ...]
    indexed_target_names: tuple[str, ...]
    """What ``match_expr`` reads without its index term: all an index candidate's answer depends on."""


def plan_index(rule: Conjunction, index: MatchIndex | None) -> tuple[IndexPlan | None, str | None]:
    """The index, when one top-level term of ``match_expr`` is exactly
    ``stringListMember(TARGET.<entry_attr>, MY.<job_attr>)`` (or stringListIMember).

    Only then does "the entry's value is in the job's list" follow from the
    expression, so skipping the other entries cannot lose a match. A term
    under ``||``, a third (delimiter) argument, or other attributes: no.
    """
    if index is None:
        return None, None
    for position, term in enumerate(rule.terms):
        found = _INDEX_TERM.match(strip_parentheses(term.text))
        if (
            found
            and found["entry"].lower() == index.entry_attr.lower()
            and found["job"].lower() == index.job_attr.lower()
        ):
            return IndexPlan(index.job_attr, index.entry_attr, position, bool(found["fold"])), None
    wanted = f"stringListMember(TARGET.{index.entry_attr}, MY.{index.job_attr})"
    return None, (
        f"match_index is not used: match_expr has no top-level term `{wanted}` (joined to the rest with &&), "
        "so the index could skip entries the expression accepts; every entry is compared"
    )


def group_rules(group: Group) -> GroupRules:
    match_rule = compile_conjunction(group.match_expr)
    index, problem = plan_index(match_rule, group.match_index)
    start = compile_conjunction(group.pilot_start) if group.pilot_start and group.match_job_requirements else None
    kept = [term for i, term in enumerate(match_rule.terms) if index is None or i != index.term]
    return GroupRules(
        match=match_rule,
        requirements=group.match_job_requirements,
        start=start,
        index=index,
        index_problem=problem,
        indexed_my_names=tuple(sorted({name for term in kept for name in term.my_names})),
        indexed_target_names=tuple(sorted({name for term in kept for name in term.target_names})),
    )


def job_attrs(shape: JobShape) -> Mapping[str, Any]:
    """The shape's attributes as its MY ad: RequestCpus/RequestMemory filled from
    the shape when the schedd did not project them, so expressions can use them.
    Read only: the shape's own mapping when nothing is missing."""
    if "RequestCpus" in shape.attrs and "RequestMemory" in shape.attrs:  # as observe projects them
        return shape.attrs
    attrs = dict(shape.attrs)
    present = {name.lower() for name in attrs}
    if "requestcpus" not in present:
        attrs["RequestCpus"] = shape.cpus
    if "requestmemory" not in present:
        attrs["RequestMemory"] = shape.memory_mb
    return attrs


def index_tokens(value: Any, fold_case: bool = False) -> tuple[str, ...] | None:
    """The values a job's index attribute allows, split as stringListMember splits; None when the
    attribute is no string (the index then says nothing and every entry is compared)."""
    if not isinstance(value, str):
        return None
    tokens = (token for token in _LIST_SEPARATORS.split(value) if token)
    return tuple(dict.fromkeys(token.lower() if fold_case else token for token in tokens))


# --------------------------------------------------------------------------
# Shapes: merged across schedds, with their class keys
# --------------------------------------------------------------------------


def _attrs_key(attrs: Mapping[str, Any]) -> Any:
    """Equal for equal attributes: names in order (observe writes them in one order per group), values
    with their types (1, 1.0 and true differ). A different order only costs a merge, never a wrong one."""
    values = tuple(attrs.values())
    try:
        hash(values)
    except TypeError:  # an unhashable value (a list): the slower exact key
        return tuple(sorted((name.lower(), value_key(value)) for name, value in attrs.items()))
    return tuple(attrs), tuple(map(type, values)), values


def merge_shapes(shapes: Iterable[JobShape]) -> list[JobShape]:
    """Identical shapes (same group and attributes) from different schedds as one, counts summed.

    The schedd names join, for explanations; no decision needs per-schedd counts.
    """
    merged: dict[Any, list[JobShape]] = {}
    for shape in shapes:
        merged.setdefault((shape.group, shape.cpus, shape.memory_mb, _attrs_key(shape.attrs)), []).append(shape)
    return [same[0] if len(same) == 1 else _summed(same) for same in merged.values()]


def _summed(same: Sequence[JobShape]) -> JobShape:
    first = same[0]
    return JobShape(
        group=first.group,
        schedd=", ".join(sorted({shape.schedd for shape in same})),
        attrs=first.attrs,
        idle=sum(shape.idle for shape in same),
        old_idle=sum(shape.old_idle for shape in same),
        running=sum(shape.running for shape in same),
        cpus=first.cpus,
        memory_mb=first.memory_mb,
    )


class _Interned:
    """Class keys to small ints; an unshareable rule gives every ad a class of its own."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}

    def of(self, key: Any) -> int:
        found = self.ids.get(key)
        if found is None:
            found = self.ids[key] = len(self.ids)
        return found


_PLAIN = frozenset((str, int, float, bool))


class _Spellings:
    """Lowercase copies of many ads that share their attribute names (every entry of a factory does):
    the lowercase names are worked out once per distinct list of names."""

    __slots__ = ("known",)

    def __init__(self) -> None:
        self.known: dict[tuple[str, ...], tuple[str, ...]] = {}

    def lowered(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        names = tuple(attrs)
        low = self.known.get(names)
        if low is None:
            low = self.known[names] = tuple(name.lower() for name in names)
        return dict(zip(low, attrs.values(), strict=True))


def _key(attrs: Mapping[str, Any], names: Sequence[str], shareable: bool) -> Any:
    """The values `names` have in `attrs`, as a class key (typed: 1, 1.0 and true differ)."""
    if not shareable:
        return object()
    if len(names) == 1:  # most terms read one attribute of each side
        value = attrs.get(names[0], _ABSENT)
        return (
            value if value is _ABSENT else (value.__class__, value) if value.__class__ in _PLAIN else value_key(value),
        )
    key = []
    for name in names:
        value = attrs.get(name, _ABSENT)
        if value is _ABSENT:
            key.append(_ABSENT)
        elif value.__class__ in _PLAIN:
            key.append((value.__class__, value))
        else:
            key.append(value_key(value))
    return tuple(key)


# --------------------------------------------------------------------------
# Entries: their classes and candidate sets
# --------------------------------------------------------------------------


_Members = tuple[int, ...]
_CandidateGroup = tuple[tuple[int, ...], _Members, bool]
"""An entry class (cpus, match class, requirement class, start class, downtime), its entries, and whether
they are index candidates of the shape (the index term then known true)."""


@dataclass(slots=True)
class _Entries:
    """The group's entries pre-sorted once: classes, prospective slots, candidate sets per index value."""

    entries: tuple[EntryAd, ...]
    cpus: tuple[int, ...]
    cores: tuple[int, ...]
    """Cores per pilot, all nodes (at least 1): what a job's cpus are a share of."""
    down: tuple[bool, ...]
    lowered: tuple[dict[str, Any], ...]
    slots: tuple[dict[str, Any], ...]
    """Lowercase prospective slot attributes."""
    same_slot: tuple[int, ...]
    """Per entry, the first entry with an equal prospective slot: many entries describe the same pilots,
    and what the slot alone decides is then worked out once."""
    match_class: tuple[int, ...]
    """Over the names every term of ``match_expr`` reads."""
    indexed_class: tuple[int, ...]
    """Over the names every term but the index term reads: how index candidates are told apart."""
    start_class: tuple[int, ...]
    by_value: dict[str, list[int]]
    unindexed: list[int]
    """Entries whose index attribute is no string: candidates for every shape."""
    term_classes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Per term of ``match_expr``: each entry's class over the names that term reads (`_Judge.term_classes`)."""
    requirement_classes: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Per Requirements conjunction id: each entry's slot class."""
    groups: dict[tuple[Any, int], tuple[_CandidateGroup, ...]] = field(default_factory=dict)
    """Per (candidate set, Requirements id): the set's entries grouped by class."""
    term_members: list[dict[int, list[int]]] = field(default_factory=list)
    """Per term of ``match_expr``: its entry classes and their entries (built when first needed)."""


def _entry_table(
    entries: Sequence[EntryAd], rules: GroupRules, slots: Mapping[str, Mapping[str, Any]], interned: _Interned
) -> _Entries:
    spellings = _Spellings()
    lowered_entries = [spellings.lowered(entry.attrs) for entry in entries]
    lowered_slots = [spellings.lowered(slots.get(entry.key, {})) for entry in entries]
    by_value: dict[str, list[int]] = {}
    unindexed: list[int] = []
    if rules.index is not None:
        wanted = rules.index.entry_attr.lower()
        for position, attrs in enumerate(lowered_entries):
            value = attrs.get(wanted)
            if isinstance(value, str):
                by_value.setdefault(value.lower() if rules.index.fold_case else value, []).append(position)
            else:
                unindexed.append(position)
    match_rule, start = rules.match, rules.start
    return _Entries(
        entries=tuple(entries),
        cpus=tuple(entry.cpus_per_pilot for entry in entries),
        cores=tuple(max(1, entry.cores_per_pilot) for entry in entries),
        down=tuple(entry.takes_no_pilots for entry in entries),
        lowered=tuple(lowered_entries),
        slots=tuple(lowered_slots),
        same_slot=_first_equal(lowered_slots),
        match_class=tuple(
            interned.of(("m", _key(attrs, match_rule.target_names, match_rule.shareable))) for attrs in lowered_entries
        ),
        indexed_class=tuple(
            interned.of(("i", _key(attrs, rules.indexed_target_names, match_rule.shareable)))
            for attrs in lowered_entries
        ),
        start_class=tuple(
            interned.of(("s", _key(attrs, start.my_names, start.shareable))) if start else 0 for attrs in lowered_slots
        ),
        by_value=by_value,
        unindexed=unindexed,
    )


# --------------------------------------------------------------------------
# Judging pairs of classes, each once
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Judge:
    """Answers per pair of classes, with one representative ad per class built when first needed."""

    rules: GroupRules
    table: _Entries
    interned: _Interned
    evaluations: int = 0
    match_answers: dict[tuple[int, int, bool], bool] = field(default_factory=dict)
    term_answers: dict[tuple[int, int, int], Any] = field(default_factory=dict)
    """(term, its class of the job, its class of the entry) -> the term's value."""
    term_candidates: dict[tuple[int, int], tuple[Any, list[int]]] = field(default_factory=dict)
    """(term, its class of the job) -> the entries it may accept (`pruned`)."""
    refusals: dict[tuple[int, int], bool] = field(default_factory=dict)
    start_refusals: dict[tuple[int, int], bool] = field(default_factory=dict)
    class_refusals: dict[tuple[tuple[int | None, int, int], int, int], bool] = field(default_factory=dict)
    """((the shape's Requirements id, its class, its START class), the entry's slot classes for both) -> `refused`."""
    ads: dict[Any, classad2.ClassAd] = field(default_factory=dict)
    requirements: list[Conjunction] = field(default_factory=list)
    requirement_ids: dict[str, int] = field(default_factory=dict)
    rest: dict[bool, classad2.ExprTree] = field(default_factory=dict)

    def ad(self, key: Any, attrs: Mapping[str, Any]) -> classad2.ClassAd:
        found = self.ads.get(key)
        if found is None:
            found = self.ads[key] = classad_of(attrs)
        return found

    def _term_ad(self, key: Any, low: Mapping[str, Any], names: Sequence[str]) -> classad2.ClassAd:
        """`ad` for one term's side, built from what the term reads (`_read_by`) when first needed."""
        found = self.ads.get(key)
        if found is None:
            found = self.ads[key] = classad_of(_read_by(low, names, self.rules.match.shareable))
        return found

    def matches(self, shape: _Shape, entry: int, indexed: bool) -> bool:
        """``match_expr`` for the shape's class and the entry's; `indexed`: the entry is an index
        candidate of the shape, so the index term is known true and skipped."""
        if indexed:
            pair = (shape.indexed_class, self.table.indexed_class[entry], True)
        else:
            pair = (shape.match_class(self.rules, self.interned), self.table.match_class[entry], False)
        answer = self.match_answers.get(pair)
        if answer is None:
            answer = self.match_answers[pair] = self._match(shape, pair, entry)
        return answer

    def _match(self, shape: _Shape, pair: tuple[int, int, bool], entry: int) -> bool:
        """Only a boolean true matches; a term that is a number leaves it to the whole expression."""
        shape_class, entry_class, indexed = pair
        skip = self.rules.index.term if indexed and self.rules.index else -1
        for position in range(len(self.rules.match.terms)):
            if position == skip:
                continue
            mine = shape.term_class(position, self.rules, self.interned)
            value = self._term_value(shape, position, mine, self.term_classes(position)[entry], entry)
            if value is True:
                continue
            if is_number(value):
                my = self.ad(("job", shape_class), shape.attrs)
                target = self.ad(("entry", entry_class), self.table.entries[entry].attrs)
                return self._rest(indexed).eval(my, target) is True
            return False
        return True

    def pruned(self, shape: _Shape) -> tuple[Any, Sequence[int]]:
        """The entries every term of ``match_expr`` may accept, judged per term on its own classes.

        Without the index a shape would be compared with every entry class;
        instead each term is evaluated once per distinct value of what it reads
        of entries (a few hundred sites, two VO lists...), and the entries of
        the term that keeps fewest are the candidates. A term that is neither
        true nor a number rules an entry out: the conjunction cannot be true.
        """
        everything = range(len(self.table.entries))
        if not self.rules.match.shareable or not self.table.entries:
            return "*", everything
        best: tuple[Any, Sequence[int]] | None = None
        for position in range(len(self.rules.match.terms)):
            mine = shape.term_class(position, self.rules, self.interned)
            found = self.term_candidates.get((position, mine))
            if found is None:
                found = self.term_candidates[(position, mine)] = self._term_candidates(shape, position, mine)
            if best is None or len(found[1]) < len(best[1]):
                best = found
            if not best[1]:  # no entry passes this term: the others need not be judged
                break
        return best or ("*", everything)

    def _term_candidates(self, shape: _Shape, position: int, mine: int) -> tuple[Any, list[int]]:
        members_by_class = self._term_members(position)
        kept: list[int] = []
        for entry_class, members in members_by_class.items():
            value = self._term_value(shape, position, mine, entry_class, members[0])
            if value is True or is_number(value):
                kept.extend(members)
        return ("t", position, mine), sorted(kept)

    def _term_members(self, position: int) -> dict[int, list[int]]:
        while len(self.table.term_members) <= position:
            classes = self.term_classes(len(self.table.term_members))
            members: dict[int, list[int]] = {}
            for entry, entry_class in enumerate(classes):
                members.setdefault(entry_class, []).append(entry)
            self.table.term_members.append(members)
        return self.table.term_members[position]

    def _term_value(self, shape: _Shape, position: int, mine: int, entry_class: int, entry: int) -> Any:
        """One term's value for the shape's class and an entry class (each pair evaluated once)."""
        key = (position, mine, entry_class)
        value = self.term_answers.get(key, _ABSENT)
        if value is _ABSENT:
            self.evaluations += 1
            term = self.rules.match.terms[position]
            value = self.term_answers[key] = term.expr.eval(
                self._term_ad(("term-job", position, mine), shape.low, term.my_names),
                self._term_ad(("term-entry", position, entry_class), self.table.lowered[entry], term.target_names),
            )
        return value

    def _rest(self, indexed: bool) -> classad2.ExprTree:
        """The expression without the index term (known true for candidates), or whole."""
        found = self.rest.get(indexed)
        if found is None:
            skip = self.rules.index.term if indexed and self.rules.index else -1
            kept = [f"({t.text})" for i, t in enumerate(self.rules.match.terms) if i != skip] or ["true"]
            found = self.rest[indexed] = classad2.ExprTree(" && ".join(kept))
        return found

    def requirement_id(self, low: Mapping[str, Any]) -> int | None:
        """Which Requirements conjunction the shape carries (`low`: its attributes by lowercase name;
        None: it has none, or matching ignores it)."""
        if not self.rules.requirements:
            return None
        text = expression_text(low.get("requirements"))
        if text is None:
            return None
        found = self.requirement_ids.get(text)
        if found is None:
            found = self.requirement_ids[text] = len(self.requirements)
            self.requirements.append(compile_conjunction(text))
        return found

    def refused(self, shape: _Shape, entry: int) -> bool:
        """The job's Requirements, or the group's pilot_start, are shown false on the entry's pilots."""
        if shape.requirement is not None:
            slot_class = self.requirement_classes(shape.requirement)[entry]
            pair = (shape.requirement_class, slot_class)
            answer = self.refusals.get(pair)
            if answer is None:
                conjunction = self.requirements[shape.requirement]
                answer = self.refusals[pair] = self._shown_false(
                    conjunction.terms,
                    shape.attrs,
                    self.table.slots[entry],
                    ("req-job", ("req-slot", shape.requirement), (shape.requirement_class, slot_class)),
                )
            if answer:
                return True
        if self.rules.start is not None:
            pair = (self.table.start_class[entry], shape.start_class)
            answer = self.start_refusals.get(pair)
            if answer is None:
                answer = self.start_refusals[pair] = self._shown_false(
                    self.rules.start.terms, self.table.slots[entry], shape.attrs, ("start-slot", "start-job", pair)
                )
            return answer
        return False

    def _shown_false(
        self,
        terms: Sequence[Term],
        my_attrs: Mapping[str, Any],
        target_attrs: Mapping[str, Any],
        where: tuple[Any, Any, tuple[int, int]],
    ) -> bool:
        """Some term is shown false; `where` names the two classes' ads (kinds, then ids)."""
        my_kind, target_kind, (my_class, target_class) = where
        my = self.ad((my_kind, my_class), my_attrs)
        target = self.ad((target_kind, target_class), target_attrs)
        known = KnownNames(frozenset(lowered(my_attrs)), frozenset(lowered(target_attrs)))
        for term in terms:
            self.evaluations += 1
            if judge_term(term, my, target, known) is Verdict.FALSE:
                return True
        return False

    def term_classes(self, position: int) -> tuple[int, ...]:
        """Each entry's class over what one term reads, worked out when first needed: with the index, the
        index term's never is."""
        found = self.table.term_classes.get(position)
        if found is None:
            names, shareable = self.rules.match.terms[position].target_names, self.rules.match.shareable
            found = self.table.term_classes[position] = tuple(
                self.interned.of(("t", _key(attrs, names, shareable))) for attrs in self.table.lowered
            )
        return found

    def requirement_classes(self, requirement: int) -> tuple[int, ...]:
        found = self.table.requirement_classes.get(requirement)
        if found is None:
            conjunction = self.requirements[requirement]
            names, shareable, slots = conjunction.target_names, conjunction.shareable, self.table.slots
            if shareable:  # equal slots are in one class: each distinct slot is keyed once
                keys: dict[int, Any] = {}
                for first in self.table.same_slot:
                    if first not in keys:
                        keys[first] = _key(slots[first], names, shareable)
                found = tuple(_interned_ids(keys[first] for first in self.table.same_slot))
            else:
                found = tuple(_interned_ids(_key(slot, names, shareable) for slot in slots))
            self.table.requirement_classes[requirement] = found
        return found


def _read_by(low: Mapping[str, Any], names: Sequence[str], shareable: bool) -> Mapping[str, Any]:
    """The part of an ad (`low`: by lowercase name) one term can read: the names it reads, unless the
    rule looks names up at run time (not `shareable`) or some value is an expression, either of which
    may read anything. Ads of a few attributes are built much faster."""
    if not shareable or any(value.__class__ not in _PLAIN for value in low.values()):
        return low
    return {name: low[name] for name in names if name in low}


def _first_equal(ads: Sequence[Mapping[str, Any]]) -> tuple[int, ...]:
    """Per ad, the position of the first ad equal to it (`_attrs_key`)."""
    first: dict[Any, int] = {}
    return tuple(first.setdefault(_attrs_key(ad), position) for position, ad in enumerate(ads))


def _interned_ids(keys: Iterable[Any]) -> list[int]:
    interned = _Interned()
    return [interned.of(key) for key in keys]


@dataclass(slots=True)
class _Shape:
    """One merged shape with its class ids."""

    shape: JobShape
    attrs: Mapping[str, Any]
    """Its MY ad (`job_attrs`)."""
    indexed: bool
    """The job's index attribute is a string: index candidates need not evaluate the index term."""
    tokens: tuple[str, ...]
    low: dict[str, Any]
    indexed_class: int
    """Over the names of every term but the index term: for index candidates."""
    requirement: int | None
    requirement_class: int
    start_class: int
    match_class_found: int | None = None
    term_classes_found: tuple[int, ...] | None = None

    def match_class(self, rules: GroupRules, interned: _Interned) -> int:
        """Over every term's names: for entries compared in full (worked out only if one is)."""
        if self.match_class_found is None:
            key = _key(self.low, rules.match.my_names, rules.match.shareable)
            self.match_class_found = interned.of(("m", False, key))
        return self.match_class_found

    def term_class(self, position: int, rules: GroupRules, interned: _Interned) -> int:
        """Per term of ``match_expr``: the class over the names that term reads (on a cache miss only)."""
        if self.term_classes_found is None:
            shareable = rules.match.shareable
            self.term_classes_found = tuple(
                interned.of(("t", _key(self.low, term.my_names, shareable))) for term in rules.match.terms
            )
        return self.term_classes_found[position]


def _shape(shape: JobShape, judge: _Judge, interned: _Interned) -> _Shape:
    rules = judge.rules
    attrs = job_attrs(shape)
    low = lowered(attrs)
    tokens = None
    if rules.index is not None:
        tokens = index_tokens(low.get(rules.index.job_attr.lower()), rules.index.fold_case)
    indexed = tokens is not None
    requirement = judge.requirement_id(low)
    requirement_class = 0
    if requirement is not None:
        conjunction = judge.requirements[requirement]
        requirement_class = interned.of(("r", requirement, _key(low, conjunction.my_names, conjunction.shareable)))
    start = rules.start
    return _Shape(
        shape=shape,
        attrs=attrs,
        indexed=indexed,
        tokens=tokens or (),
        low=low,
        indexed_class=interned.of(("m", True, _key(low, rules.indexed_my_names, rules.match.shareable))),
        requirement=requirement,
        requirement_class=requirement_class,
        start_class=interned.of(("s", _key(low, start.target_names, start.shareable))) if start else 0,
    )


def _candidate_groups(shape: _Shape, judge: _Judge) -> Sequence[_CandidateGroup]:
    """The entries worth comparing, as classes: all of them, or those the job's index attribute lists
    (known to satisfy the index term) and those whose index attribute is no string (compared in full)."""
    if not shape.indexed:
        which, members = judge.pruned(shape)
        return _grouped(judge, which, members, shape.requirement)
    found: list[_CandidateGroup] = []
    by_value = judge.table.by_value
    for token in shape.tokens:
        listed = by_value.get(token)
        if listed:
            found.extend(_grouped(judge, ("=", token), listed, shape.requirement))
    if judge.table.unindexed:
        found.extend(_grouped(judge, "?", judge.table.unindexed, shape.requirement))
    return found


def _grouped(judge: _Judge, which: Any, members: Iterable[int], requirement: int | None) -> tuple[_CandidateGroup, ...]:
    """A candidate set's entries grouped by everything matching reads, computed once per set."""
    table = judge.table
    found = table.groups.get((which, -1 if requirement is None else requirement))
    if found is not None:
        return found
    requirement_of = judge.requirement_classes(requirement) if requirement is not None else None
    classes: dict[tuple[int, ...], list[int]] = {}
    indexed = which[0] == "="
    for member in members:
        key = (
            table.cpus[member],
            table.indexed_class[member] if indexed else table.match_class[member],
            requirement_of[member] if requirement_of is not None else 0,
            table.start_class[member],
            int(table.down[member]),
        )
        classes.setdefault(key, []).append(member)
    found = tuple((key, tuple(entries), indexed) for key, entries in classes.items())
    table.groups[(which, -1 if requirement is None else requirement)] = found
    return found


# --------------------------------------------------------------------------
# Spreading shapes over the entries that take them
# --------------------------------------------------------------------------


class _Totals:
    """Per-entry running sums while shapes are spread (lists: this is the hot loop)."""

    __slots__ = ("idle", "keyed", "old_idle", "old_pilots", "pilots", "placed", "requirements", "running", "shapes")

    def __init__(self, size: int) -> None:
        self.idle = [0.0] * size
        self.old_idle = [0.0] * size
        self.running = [0.0] * size
        self.pilots = [0.0] * size
        self.old_pilots = [0.0] * size
        self.shapes = [0] * size
        self.requirements: list[set[tuple[int, int]] | None] = [None] * size
        self.placed: list[set[str] | None] = [None] * size
        self.keyed: dict[str, tuple[JobShape, int]] = {}

    def spread(
        self, shape: JobShape, targets: Sequence[int], cores: Sequence[int], key: str | None, watched: list[bool]
    ) -> None:
        """Equal split: without knowing where the negotiator will send each job,
        1/k per matching entry is the unbiased guess, and it keeps totals exact.
        `cores`: each entry's cores per pilot (all nodes); `key` (the shape's)
        is recorded as placed on the `watched` targets."""
        share = 1.0 / len(targets)
        idle, old_idle = shape.idle * share, shape.old_idle * share
        running, cpus = shape.running * share, shape.cpus
        totals_idle, totals_old, totals_running = self.idle, self.old_idle, self.running
        totals_pilots, totals_old_pilots, totals_shapes = self.pilots, self.old_pilots, self.shapes
        for target in targets:
            per_pilot = cpus / cores[target]
            totals_idle[target] += idle
            totals_old[target] += old_idle
            totals_running[target] += running
            totals_pilots[target] += idle * per_pilot
            totals_old_pilots[target] += old_idle * per_pilot
            totals_shapes[target] += 1
        if shape.idle:
            self._note_idle(shape, targets, key, watched)

    def _note_idle(self, shape: JobShape, targets: Sequence[int], key: str | None, watched: list[bool]) -> None:
        """On the watched targets: what an idle slot must fit, and where the shape's idle jobs went."""
        need = (shape.cpus, shape.memory_mb)
        requirements, placed = self.requirements, self.placed
        for target in targets:
            if not watched[target]:
                continue
            found = requirements[target]
            if found is None:
                found = requirements[target] = set()
            found.add(need)
            if key is not None:
                keys = placed[target]
                if keys is None:
                    keys = placed[target] = set()
                keys.add(key)

    def demands(self, entries: Sequence[EntryAd]) -> dict[str, EntryDemand]:
        return {
            entry.key: EntryDemand(
                entry=entry,
                idle_jobs=self.idle[i],
                old_idle_jobs=self.old_idle[i],
                running_jobs=self.running[i],
                idle_pilots_needed=self.pilots[i],
                old_idle_pilots=self.old_pilots[i],
                requirements=frozenset(self.requirements[i] or _NO_SIZES),
                shapes=self.shapes[i],
            )
            for i, entry in enumerate(entries)
            if self.shapes[i]
        }

    def placements(self, entries: Sequence[EntryAd]) -> dict[str, frozenset[str]]:
        return {entry.key: frozenset(keys) for entry, keys in zip(entries, self.placed, strict=True) if keys}


@dataclass(slots=True)
class _Outcome:
    """Per-group counts of jobs that get no pilots, and why."""

    unmatched: int = 0
    in_downtime: int = 0
    too_big: int = 0
    unrunnable: int = 0


@dataclass(slots=True)
class _Found:
    live: list[int] = field(default_factory=list)
    down: list[int] = field(default_factory=list)
    too_small: list[tuple[int, bool]] = field(default_factory=list)
    """(a member of a class refused for lack of cpus, whether it is an index candidate): judged only
    if nothing takes the shape."""
    refused: bool = False
    """Some entry's match_expr took the shape, but its Requirements or pilot_start refused every one."""


def _matching_entries(shape: _Shape, groups: Iterable[_CandidateGroup], judge: _Judge) -> _Found:
    """Entries taking the shape, live and in downtime, and classes refused only for lack of cpus.

    The cpus test is free and runs first, so entries too small never cost an
    evaluation; those are only judged later if the shape ends up unmatched,
    to tell "too big" from "nothing suits it".
    """
    found = _Found()
    cpus = shape.shape.cpus
    answers, refusals = judge.match_answers, judge.class_refusals
    # The group's key holds the entry's classes: known answers are looked up here, without a call.
    mine = (shape.requirement, shape.requirement_class, shape.start_class)
    for key, members, indexed in groups:
        first = members[0]
        if cpus > key[0]:
            found.too_small.append((first, indexed))
            continue
        answer = answers.get((shape.indexed_class, key[1], True)) if indexed else None
        if answer is None:
            answer = judge.matches(shape, first, indexed)
        if not answer:
            continue
        refused = refusals.get((mine, key[2], key[3]))
        if refused is None:
            refused = refusals[(mine, key[2], key[3])] = judge.refused(shape, first)
        if refused:
            found.refused = True
        elif key[4]:
            found.down.extend(members)
        else:
            found.live.extend(members)
    return found


def _without_excluded(
    targets: list[int], shape_id: str, table: _Entries, excluded: Mapping[str, Collection[str]]
) -> list[int]:
    return [i for i in targets if shape_id not in excluded.get(table.entries[i].key, ())]


def _place(
    shape: _Shape,
    judge: _Judge,
    totals: _Totals,
    outcome: _Outcome,
    excluded: Mapping[str, Collection[str]],
    watched: list[bool],
    keys: bool,
) -> None:
    """Spread one shape over live entries that take it; downtime ones only get it when nothing else does.

    Splitting over downtime entries too would strand a share of the jobs
    where no pilot can be requested, even though live entries could run them.
    """
    table = judge.table
    found = _matching_entries(shape, _candidate_groups(shape, judge), judge)
    live, down = found.live, found.down
    key = None
    if excluded or (keys and shape.shape.idle and any(watched[i] for i in live or down)):
        key = shape_key(shape.shape)
        if shape.shape.idle:
            first, idle = totals.keyed.get(key, (shape.shape, 0))
            totals.keyed[key] = (first, idle + shape.shape.idle)
    if excluded and key is not None:
        live, down = _without_excluded(live, key, table, excluded), _without_excluded(down, key, table, excluded)
    if live:
        totals.spread(shape.shape, live, table.cores, key, watched)
    elif down:
        totals.spread(shape.shape, down, table.cores, key, watched)
        outcome.in_downtime += shape.shape.idle
    else:
        outcome.unmatched += shape.shape.idle
        if any(judge.matches(shape, m, indexed) and not judge.refused(shape, m) for m, indexed in found.too_small):
            outcome.too_big += shape.shape.idle
        elif found.refused:
            outcome.unrunnable += shape.shape.idle


def match(
    shapes: Iterable[JobShape],
    entries: Sequence[EntryAd],
    group_name: str,
    group_cfg: Group,
    *,
    slots: Mapping[str, Mapping[str, Any]] | None = None,
    excluded: Mapping[str, Collection[str]] | None = None,
    watch: Collection[str] | None = None,
    keys: bool = True,
    rules: GroupRules | None = None,
) -> GroupMatch:
    """Spread one group's job shapes over the entries that take them.

    `slots` gives each entry's prospective slot by entry key
    (`updraft.frontend.prospective.prospective_slots`; an entry missing
    from it is described only by its ``UpdraftSlot_*`` attributes, if
    any). `excluded` maps entry keys to shape keys the entry's idle
    pilots have refused (`updraft.frontend.feedback`): such a pair is
    treated as if nothing matched it. `watch` names the entries whose idle
    jobs' sizes (`EntryDemand.requirements`) and, with `keys`, placed
    shapes (`GroupMatch.placed`) are recorded: those with idle slots, the
    only ones where either matters (None: every entry). Cost: one evaluation per distinct
    pair of classes among index candidates, plus bookkeeping per class of
    candidates; the number of jobs and of schedds never matters.
    """
    rules = rules or group_rules(group_cfg)
    interned = _Interned()
    if slots is None:
        slots = prospective_slots(entries, ())
    table = _entry_table(entries, rules, slots, interned)
    judge = _Judge(rules, table, interned)
    totals = _Totals(len(entries))
    outcome = _Outcome()
    merged = merge_shapes(shapes)
    watched = [watch is None or entry.key in watch for entry in entries]
    for shape in merged:
        _place(_shape(shape, judge, interned), judge, totals, outcome, excluded or {}, watched, keys)
    return GroupMatch(
        group=group_name,
        demands=totals.demands(table.entries),
        unmatched=outcome.unmatched,
        in_downtime=outcome.in_downtime,
        too_big=outcome.too_big,
        evaluations=judge.evaluations,
        unrunnable=outcome.unrunnable,
        shapes=len(merged),
        placed=totals.placements(table.entries),
        keyed=totals.keyed,
    )

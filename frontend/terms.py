"""ClassAd expressions taken apart into their top-level ``&&`` terms, and judged term by term.

Matching evaluates three expressions for every (job shape, entry) pair it
cannot rule out: the group's ``match_expr`` (MY = job, TARGET = entry), the
job's own ``Requirements`` (MY = job, TARGET = the slot a pilot of that
entry will offer) and the group's ``pilot_start`` (MY = slot, TARGET = job).
Each term reads only a few attributes, so a term's answer is shared by every
pair that agrees on those attributes: a job's ``TARGET.Memory >=
RequestMemory`` has one answer per (RequestMemory, Memory), however many
entries and shapes there are. This module says which attributes each term
reads and how one term's answer reads.

Splitting is exact: ``a && b`` is true exactly when every term is true,
except that ClassAd takes a non-zero number as true inside ``&&``; a term
that evaluates to a number is therefore never judged alone (`Verdict.NUMBER`
tells the caller to evaluate the whole expression). Text with a top-level
``||`` or ``? :`` (which bind less tightly than ``&&``) is one term.

Pure and without HTCondor daemons; classad2 only parses and evaluates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import classad2

# The HTCondor bindings register HTCondor's ClassAd functions (stringListMember ...).
import htcondor2  # noqa: F401

from updraft.condor import Expression

_DYNAMIC_LOOKUP = re.compile(r"\beval\s*\(", re.IGNORECASE)
_OPERATORS = ("=?=", "=!=", ">=", "<=", "==", "!=", ">", "<")


class Verdict(Enum):
    """One term's answer for one pair."""

    TRUE = "true"
    FALSE = "false"
    """False, and every attribute it reads was known on both sides: a proof."""
    UNKNOWN = "unknown"
    """Not true, but it reads an attribute one side does not describe, or it is undefined/error."""
    NUMBER = "number"
    """A number: only the whole expression can say what ``&&`` makes of it."""


@dataclass(frozen=True, slots=True)
class Term:
    """One top-level term: its text, its parse, and the attribute names it reads (lowercase)."""

    text: str
    expr: classad2.ExprTree
    my_names: tuple[str, ...]
    target_names: tuple[str, ...]
    bare_names: frozenset[str]
    """Names written without MY./TARGET.: ClassAd looks them up in MY first, then in TARGET."""


@dataclass(frozen=True, slots=True)
class Conjunction:
    """An expression as its top-level ``&&`` terms (one term when it cannot be split)."""

    text: str
    expr: classad2.ExprTree
    terms: tuple[Term, ...]
    my_names: tuple[str, ...]
    target_names: tuple[str, ...]
    shareable: bool
    """False when ``eval()`` may read attributes no scan can see: then nothing is shared."""


def _mask_literals(text: str) -> str:
    """The text with string literals blanked out (same length), so operators inside them are not seen."""
    out, quote, i = [], "", 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and i + 1 < len(text):
                out.append("  ")
                i += 2
                continue
            out.append(quote if char == quote else " ")
            if char == quote:
                quote = ""
        else:
            if char in "\"'":
                quote = char
            out.append(char)
        i += 1
    return "".join(out)


def _depths(masked: str) -> list[int]:
    """Bracket depth at each character of literal-free text."""
    depth, found = 0, []
    for char in masked:
        if char in "([{":
            depth += 1
        found.append(depth)
        if char in ")]}":
            depth -= 1
    return found


def _has_top_level_lower_precedence(masked: str, depths: list[int]) -> bool:
    """A top-level ``||`` or ``? :`` makes a split at ``&&`` wrong (they bind less tightly)."""
    plain = masked.replace("=?=", "   ").replace("=!=", "   ")
    return any(depths[i] == 0 and (char in "?:" or plain.startswith("||", i)) for i, char in enumerate(plain))


def split_conjuncts(text: str) -> tuple[str, ...]:
    """The top-level ``&&`` terms of `text`; the whole text as one term when splitting would be wrong."""
    masked = _mask_literals(text)
    depths = _depths(masked)
    if _has_top_level_lower_precedence(masked, depths):
        return (text.strip(),)
    terms, start = [], 0
    i = 0
    while i < len(masked):
        if depths[i] == 0 and masked.startswith("&&", i):
            terms.append(text[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    terms.append(text[start:].strip())
    return tuple(term for term in terms if term)


def strip_parentheses(text: str) -> str:
    """``(a >= b)`` -> ``a >= b``, only when the outer pair encloses everything."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depths = _depths(_mask_literals(text))
        if any(depth == 0 for depth in depths[1:-1]) or depths[-1] != 1:
            break
        text = text[1:-1].strip()
    return text


def _names(expr: classad2.ExprTree) -> tuple[set[str], set[str], set[str]]:
    """(MY names, TARGET names, bare names), lowercase; a bare name counts on both sides."""
    my_names: set[str] = set()
    target_names: set[str] = set()
    bare: set[str] = set()
    for ref in classad2.ClassAd().externalRefs(expr):
        scope, _, rest = ref.partition(".")
        if rest and scope.lower() == "target":
            target_names.add(rest.split(".")[0].lower())
        elif rest and scope.lower() == "my":
            my_names.add(rest.split(".")[0].lower())
        elif scope:
            # classad2 reports MY.x as plain x: such a name is looked up in MY, then TARGET.
            name = scope.lower()
            my_names.add(name)
            target_names.add(name)
            bare.add(name)
    return my_names, target_names, bare


def compile_term(text: str) -> Term:
    expr = classad2.ExprTree(text)
    my_names, target_names, bare = _names(expr)
    return Term(text, expr, tuple(sorted(my_names)), tuple(sorted(target_names)), frozenset(bare))


def compile_conjunction(text: str) -> Conjunction:
    """Parse once; the terms and the names each reads. Raises classad2's error on bad syntax."""
    expr = classad2.ExprTree(text)
    terms = tuple(compile_term(term) for term in split_conjuncts(text))
    return Conjunction(
        text=text,
        expr=expr,
        terms=terms,
        my_names=tuple(sorted({name for term in terms for name in term.my_names})),
        target_names=tuple(sorted({name for term in terms for name in term.target_names})),
        shareable=_DYNAMIC_LOOKUP.search(text) is None,
    )


def value_key(value: Any) -> Any:
    """A hashable stand-in that differs whenever ClassAd evaluation could differ.

    The type is part of the key (1, 1.0 and true compare equal in Python but
    not under ``=?=``). An expression-valued attribute may reference anything,
    so it gets a unique key and never shares.
    """
    if isinstance(value, (str, int, float, bool)) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(value_key(item) for item in value))
    if isinstance(value, Mapping):
        return ("ad", tuple(sorted((str(k).lower(), value_key(v)) for k, v in value.items())))
    return object()


def lowered(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """ClassAd attribute names are case-insensitive; Python dict keys are not."""
    return {name.lower(): value for name, value in attrs.items()}


def classad_of(attrs: Mapping[str, Any]) -> classad2.ClassAd:
    """A ClassAd from plain values; an `Expression` becomes the expression it was in its own ad."""
    return classad2.ClassAd({name: _classad_value(value) for name, value in attrs.items()})


def _classad_value(value: Any) -> Any:
    return classad2.ExprTree(value.text) if isinstance(value, Expression) else value


def is_number(value: Any) -> bool:
    """A ClassAd number; classad2's Undefined and Error are int enums and booleans are ints, neither counts."""
    return isinstance(value, (int, float)) and not isinstance(value, (bool, classad2.Value))


def expression_text(value: Any) -> str | None:
    """An attribute's value as expression text (a job's Requirements): an `Expression`, a literal
    boolean, or a string taken as written; None for anything else (it says nothing to judge)."""
    if isinstance(value, Expression):
        return value.text
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else None


def judge_term(term: Term, my: classad2.ClassAd, target: classad2.ClassAd, known: KnownNames) -> Verdict:
    """One term's verdict; FALSE only when it read nothing either side leaves undescribed."""
    value = term.expr.eval(my, target)
    if value is True:
        return Verdict.TRUE
    if is_number(value):
        return Verdict.NUMBER
    if value is False and known.covers(term):
        return Verdict.FALSE
    return Verdict.UNKNOWN


@dataclass(frozen=True, slots=True)
class KnownNames:
    """Which attributes each side of a judgement describes (lowercase names)."""

    my: frozenset[str]
    target: frozenset[str]

    def covers(self, term: Term) -> bool:
        """Every name the term reads is described: a bare name by either side, as ClassAd looks it up."""
        for name in term.my_names:
            if name not in self.my and not (name in term.bare_names and name in self.target):
                return False
        for name in term.target_names:
            if name not in self.target and not (name in term.bare_names and name in self.my):
                return False
        return True


def comparison_parts(text: str) -> tuple[str, str, str] | None:
    """``a >= b`` -> ("a", ">=", "b") at the one top-level comparison; None when there is none."""
    inner = strip_parentheses(text)
    masked = _mask_literals(inner)
    depths = _depths(masked)
    for i in range(len(masked)):
        if depths[i] != 0:
            continue
        for operator in _OPERATORS:
            if masked.startswith(operator, i):
                left, right = inner[:i].strip(), inner[i + len(operator) :].strip()
                if left and right and not any(op in _mask_literals(right) for op in ("&&", "||")):
                    return left, operator, right
                return None
    return None


def shown(value: Any) -> str:
    """ClassAd-ish spelling of an evaluation result (classad2 gives Value.Undefined/Error enums)."""
    if value is True or value is False:
        return str(value).lower()
    if isinstance(value, classad2.Value):
        return str(value.name).lower()
    return repr(value)


def why_false(term: Term, my: classad2.ClassAd, target: classad2.ClassAd) -> str:
    """The term with the values it compared: ``TARGET.Memory >= RequestMemory: 2048 >= 4000000 is false``."""
    text = strip_parentheses(term.text)
    parts = comparison_parts(text)
    if parts is None:
        return f"{text} is {shown(term.expr.eval(my, target))}"
    left, operator, right = parts
    left_value = classad2.ExprTree(left).eval(my, target)
    right_value = classad2.ExprTree(right).eval(my, target)
    if operator in ("==", "=?=", "!=", "=!=") and isinstance(left_value, str) and isinstance(right_value, str):
        return f"{text}: {shown(left_value)} vs {shown(right_value)}"
    return f"{text}: {shown(left_value)} {operator} {shown(right_value)} is {shown(term.expr.eval(my, target))}"

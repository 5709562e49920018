"""Layered YAML configuration, validated into typed, immutable models.

A component reads one main file (``etc/factory.yaml``) and then every
``*.yaml`` drop-in of the sibling ``<stem>.d/`` directory in file-name
order, so a site can add an entry or override one limit without editing
the shipped file. Mappings merge key by key; for anything else the later
file wins. Because the final value may come from any of several files,
every leaf remembers which file set it: conflicts between files become
warnings naming both files, and validation errors name the file the
operator has to edit, not just a key.

The shared field types (``Name``, ``HostPort``, ``ClassAdExpr`` ...) live
here so the factory and frontend models check the same things the same way.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import itertools
import json
import logging
import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

import classad2
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
    WrapSerializer,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from updraft import redact
from updraft.errors import ConfigError

log = logging.getLogger(__name__)

KeyPath = tuple[Any, ...]
"""Where a value sits in the merged document: mapping keys and list indexes."""

M = TypeVar("M", bound=BaseModel)
K = TypeVar("K")
V = TypeVar("V")

_SECRET_WORDS = ("token", "password", "secret", "key")
_SHOW_MAX = 60
_MISSING = object()


class _Redacted:
    """Stands in for a secret value; its repr is what messages show."""

    def __repr__(self) -> str:
        return "<redacted>"


_REDACTED = _Redacted()


# --------------------------------------------------------------------------
# Shared field types
# --------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTITY = re.compile(r"[^@\s]+@[^@\s]+")
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})")

MAX_NAME_LENGTH = 128
"""Names become file names (``entry-<name>.xml``) and parts of ad names: 128 characters
leave room for prefixes and suffixes under the 255 bytes a file name may have."""

MAX_TEXT_LENGTH = 4096
"""Any other configured text (a resource, a queue, a binary's path): one page is plenty."""

MAX_PATH_LENGTH = 4096
"""A path: Linux's PATH_MAX."""

MAX_EXPR_LENGTH = 65536
"""A ClassAd expression: generous for a long START policy, still far from a pasted file."""

MAX_INTERVAL_SECONDS = 30 * 86400
"""Cycles, waits, back-offs and idle limits: beyond 30 days a value is a typo, and a huge
one (``1e20``) would overflow the clock arithmetic when the service runs."""

MAX_LIFETIME_SECONDS = 366 * 86400
"""Lifetimes and ages (a pilot's walltime, a token's lifetime, log retention): at most a year."""

MAX_TIMEOUT_SECONDS = 86400.0
"""One call, or one monitoring run, waiting longer than a day is never meant."""

MAX_COUNT = 1_000_000
"""Pilots, jobs, submissions per cycle, releases kept: a million is beyond any pool we serve,
and a limit of 10^30 is a typo, not a way of saying "no limit"."""

MAX_CLASSAD_INT = 2**63 - 1
"""The largest integer a ClassAd holds (64 bits)."""


def _matching(pattern: re.Pattern[str], kind: str, expected: str) -> AfterValidator:
    """A validator that accepts a string only if it fully matches `pattern`."""

    def check(value: str) -> str:
        if pattern.fullmatch(value):
            return value
        raise PydanticCustomError(kind, expected)

    return AfterValidator(check)


def _check_host_port(value: str) -> str:
    """Accept ``host:port`` (``[v6addr]:port`` too) with a port of 1..65535."""
    match = _HOST_PORT.fullmatch(value) if len(value) <= MAX_NAME_LENGTH * 2 else None
    if match and 1 <= int(match["port"]) <= 65535:
        return value
    raise PydanticCustomError("host_port", "expected host:port with a port from 1 to 65535")


def _require_text(value: object) -> object:
    """Explain the usual YAML slip: an unquoted `true` is a boolean, not an expression."""
    if isinstance(value, str):
        return value
    raise PydanticCustomError("classad_type", 'expected a ClassAd expression as a quoted string, e.g. "true"')


def is_classad_expr(text: str) -> bool:
    """True if `text` is exactly one ClassAd expression.

    ``classad2.ExprTree`` parses ``[expression = TEXT]`` and keeps the first
    attribute, so ``true; x = 1`` or a stray ``]`` would be cut off without a
    word; a parenthesised copy must parse too, which such leftovers cannot.
    """
    try:
        classad2.ExprTree(text)
        classad2.ExprTree(f"({text})")
    except (classad2.ClassAdException, ValueError):
        return False
    return True


_FUNCTION_NAMES = """
    abstime allcompare anycompare argstolist avg bool ceil ceiling countmatches currenttime daytime
    debug envv1tov2 eval evalineachcontext floor formattime identicalmember ifthenelse int interval
    isabstime isboolean isclassad iserror isinteger islist isreal isreltime isstring isundefined join
    listtoargs max member mergeenvironment min pow quantize random real regexp regexpmember regexps
    reltime replace replaceall round size split splitslotname splittime splitusername strcat strcmp
    stricmp string stringlist_regexpmember stringlistavg stringlistimember stringlistisubsetmatch
    stringlistmax stringlistmember stringlistmin stringlistsintersect stringlistsize
    stringlistsubsetmatch stringlistsum substr sum time timezoneoffset tolower toupper unparse
    unresolved userhome usermap version_in_range versioncmp versioneq versionge versiongt versionle
    versionlt
"""
_CLASSAD_FUNCTIONS = frozenset(_FUNCTION_NAMES.split())
"""The ClassAd functions of the HTCondor manual ("ClassAd Functions"), lower case (the
language ignores case in function names); a unit test checks each against the library."""

_CALL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|(?<![\w.])([A-Za-z_][A-Za-z0-9_]*)\s*\(")
"""A string literal or quoted attribute name (skipped), or a function name before its ``(``."""

_PROBE_ARGUMENTS = ("undefined", "x", '"a"', "1", "1.5", "true", '{"a"}', "[a = 1]")


def called_functions(text: str) -> list[str]:
    """The names of the functions an expression calls, in order, each once.

    Read from the library's own rendering of the expression, which has no
    comments left, so only string literals and quoted names need skipping.
    """
    rendered = str(classad2.ExprTree(text))
    return list(dict.fromkeys(match[1] for match in _CALL.finditer(rendered) if match[1]))


def library_knows(function: str) -> bool:
    """True if the ClassAd library (with HTCondor's functions registered) has `function`.

    The library evaluates a call of a function it does not know to an error,
    whatever its arguments, while a function it knows gives something else
    for at least one of a few argument lists; so the answer needs no list of
    names, and covers functions added by newer HTCondor versions.
    """
    import htcondor2  # noqa: F401  (importing it registers HTCondor's own functions, e.g. stringListMember)

    for count in range(4):
        for arguments in itertools.product(_PROBE_ARGUMENTS, repeat=count):
            try:
                value = classad2.ExprTree(f"{function}({', '.join(arguments)})").eval()
            except (classad2.ClassAdException, ValueError):
                continue  # e.g. absTime("a") is refused by the parser: this probe says nothing
            if not (isinstance(value, classad2.Value) and value == classad2.Value.Error):
                return True
    return False


def unknown_functions(text: str) -> list[str]:
    """The functions `text` calls that the ClassAd library does not know (e.g. a misspelt
    ``stringListMembr``): the library would quietly evaluate each call to an error."""
    return [
        name for name in called_functions(text) if name.lower() not in _CLASSAD_FUNCTIONS and not library_knows(name)
    ]


def _check_classad(value: str) -> str:
    _bounded(value, MAX_EXPR_LENGTH, "expr_too_long")
    if not is_classad_expr(value):
        raise PydanticCustomError("classad_syntax", "not a valid ClassAd expression")
    unknown = unknown_functions(value)
    if unknown:
        raise PydanticCustomError(
            "classad_function",
            "calls {names}, not a ClassAd function (see 'ClassAd functions' in the HTCondor manual)",
            {"names": ", ".join(unknown)},
        )
    return value


def _check_scalar(value: object) -> str | int | float | bool:
    """One clear error instead of one per member of a str|int|float|bool union; the value
    must fit in an ad: a 64-bit integer, a finite number, text of bounded length."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -MAX_CLASSAD_INT - 1 <= value <= MAX_CLASSAD_INT:
            return value
        raise PydanticCustomError("int_range", "expected an integer a ClassAd can hold (64 bits)")
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise PydanticCustomError("finite_number", "expected a finite number (not .inf or .nan)")
    if isinstance(value, str):
        return _no_nul(_bounded(value, MAX_TEXT_LENGTH, "text_too_long"))
    raise PydanticCustomError("scalar_type", "expected a string, number or true/false (quote dates and other text)")


def _check_absolute(value: Path) -> Path:
    """Daemons change directory, so a relative path would mean different places."""
    if value.is_absolute():
        _bounded(str(value), MAX_PATH_LENGTH, "path_too_long")
        return value
    raise PydanticCustomError("absolute_path", "expected an absolute path")


def _bounded(value: str, limit: int, kind: str) -> str:
    if len(value) <= limit:
        return value
    raise PydanticCustomError(
        kind, "too long: {length} characters, at most {limit}", {"length": len(value), "limit": limit}
    )


def _check_not_blank(value: str) -> str:
    """``resource: ' '`` says nothing: text that must say something has a non-space character."""
    if not value.strip():
        raise PydanticCustomError("blank", "expected text that is not empty or only spaces")
    return _no_nul(_bounded(value, MAX_TEXT_LENGTH, "text_too_long"))


def _no_nul(value: str) -> str:
    """A NUL ends a C string: HTCondor would cut the value there (or refuse a whole ad)."""
    if "\0" in value:
        raise PydanticCustomError("nul_character", "contains a NUL character")
    return value


def _check_name_length(value: str) -> str:
    return _bounded(value, MAX_NAME_LENGTH, "name_too_long")


Name = Annotated[
    str,
    AfterValidator(_check_name_length),
    _matching(_NAME, "name", "expected letters, digits, '_', '.' or '-', starting with a letter or digit"),
]
"""A name that ends up in ad names and file paths (entries, groups, components): at most
`MAX_NAME_LENGTH` characters."""

AttrName = Annotated[
    str,
    AfterValidator(_check_name_length),
    _matching(_ATTR_NAME, "attr_name", "expected a ClassAd attribute name (letters, digits, '_')"),
]
Identity = Annotated[
    str,
    AfterValidator(lambda value: _bounded(value, MAX_TEXT_LENGTH, "text_too_long")),
    _matching(_IDENTITY, "identity", "expected an identity like user@domain"),
]
HostPort = Annotated[str, AfterValidator(_check_host_port)]
ClassAdExpr = Annotated[str, BeforeValidator(_require_text), AfterValidator(_check_classad)]
"""ClassAd expression text, checked to parse and to call only functions the ClassAd library
knows; kept as text (it is evaluated later). At most `MAX_EXPR_LENGTH` characters."""

AttrValue = Annotated[str | int | float | bool, PlainValidator(_check_scalar)]
"""A value published in an ad: text up to `MAX_TEXT_LENGTH` characters, a 64-bit integer,
a finite number, or true/false."""

NonBlankStr = Annotated[str, AfterValidator(_check_not_blank)]
"""Text that must say something: not empty, not only spaces, at most `MAX_TEXT_LENGTH` characters."""

NonEmptyStr = NonBlankStr
"""The former name of `NonBlankStr`, kept for grid type and writer plugins written against it."""

Text = Annotated[str, AfterValidator(lambda value: _bounded(value, MAX_TEXT_LENGTH, "text_too_long"))]
"""Text that may be empty (extra arguments, a comment), at most `MAX_TEXT_LENGTH` characters."""

Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
"""A number of pilots, jobs or actions: 0 (a real zero) up to `MAX_COUNT`."""
PositiveCount = Annotated[int, Field(ge=1, le=MAX_COUNT)]

IntervalSeconds = Annotated[int, Field(ge=1, le=MAX_INTERVAL_SECONDS)]
"""Whole seconds from 1 up to 30 days: cycles, back-offs, windows."""
DurationSeconds = Annotated[int, Field(ge=0, le=MAX_INTERVAL_SECONDS)]
"""Whole seconds from 0 (off) up to 30 days: a pilot's idle limits and margins."""
LifetimeSeconds = Annotated[int, Field(ge=1, le=MAX_LIFETIME_SECONDS)]
"""Whole seconds from 1 up to a year: lifetimes, ages, retention."""
NonNegativeLifetimeSeconds = Annotated[int, Field(ge=0, le=MAX_LIFETIME_SECONDS)]
"""Whole seconds from 0 (off) up to a year."""
TimeoutSeconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_SECONDS, allow_inf_nan=False)]
"""Seconds (a fraction allowed) above 0 and at most a day; ``.inf`` and ``.nan`` are refused."""


Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
"""A share above 0 and at most 1."""

NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_CLASSAD_INT)]
"""Prefer a type that says what the number is (`Count`, `DurationSeconds` ...); this one only
keeps the value within what a ClassAd can hold."""
PositiveInt = Annotated[int, Field(ge=1, le=MAX_CLASSAD_INT)]
AbsolutePath = Annotated[Path, Strict(False), AfterValidator(_check_absolute)]

FrozenMap = Annotated[dict[K, V], AfterValidator(MappingProxyType), WrapSerializer(lambda v, handler: handler(dict(v)))]
"""A mapping field that cannot be changed after validation (frozen=True alone stops only
attribute assignment, not ``config.entries["x"] = ...``)."""

FrozenList = Annotated[tuple[V, ...], Strict(False)]
"""A list field, stored as a tuple so it cannot be changed after validation."""


class ConfigModel(BaseModel):
    """Base of every config model: immutable, strict, and no unknown keys.

    Strict typing means ``"yes"`` is not quietly a boolean and ``"10"`` not an
    integer; forbidding unknown keys turns a misspelt option into an error
    instead of a silently ignored line.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True)


# --------------------------------------------------------------------------
# Reading YAML
# --------------------------------------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest config file read: a factory of tens of thousands of entries fits many times over."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings; real configs nest fewer than ten levels."""
ALIAS_NODES_FREE = 100_000
"""Nodes YAML aliases may add to a document however small it is. Beyond that, aliases may add
at most as many nodes as the file itself holds: anchors shared by thousands of entries load,
while an alias bomb (each level ten references to the one below) is refused after a few levels,
before anything is expanded (the composed document shares the aliased nodes)."""
MAX_PROBLEMS_SHOWN = 500
"""Problems listed in one error; the rest are counted (a broken 16 MiB file must not print megabytes)."""

try:
    from yaml._yaml import CParser as _EventSource  # libyaml: the same events, ten times faster

    _READER_OFFSETS_IN_BYTES = True
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _READER_OFFSETS_IN_BYTES = False

    class _EventSource(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        """The pure-Python reader, scanner and parser, for a PyYAML built without libyaml."""

        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _LimitedComposer(yaml.composer.Composer):
    """Builds the node tree with bounds on nesting and on what aliases add, before anything is built
    from it: Python's own recursion would fail on deep nesting with a traceback, and an expanded alias
    bomb would take gigabytes."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._composed = 0
        self._through_aliases = 0
        self._expanded: dict[int, int] = {}  # id(collection node) -> nodes in it once aliases are expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]  # the parser's, mixed in beside
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._count_alias(node, event)
            return node
        if self._depth >= MAX_DEPTH:
            raise _refusal(f"nested more than {MAX_DEPTH} levels deep (the limit)", event)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._composed += 1
        if not isinstance(node, yaml.ScalarNode):  # a scalar is one node: not stored, most nodes are scalars
            self._expanded[id(node)] = 1 + sum(self._size(child) for child in _children(node))
        return node

    def _size(self, node: yaml.Node) -> int:
        return 1 if isinstance(node, yaml.ScalarNode) else self._expanded[id(node)]

    @property
    def used_aliases(self) -> bool:
        return self._through_aliases > 0

    def _count_alias(self, node: yaml.Node | None, event: yaml.Event) -> None:
        size = 1 if isinstance(node, yaml.ScalarNode) else self._expanded.get(id(node))
        if size is None:  # a collection still being composed
            raise _refusal("an alias inside the node it refers to (a structure that contains itself)", event)
        self._through_aliases += size
        allowed = max(ALIAS_NODES_FREE, self._composed)
        if self._through_aliases > allowed:
            raise _refusal(
                f"aliases expand the document by more than {allowed:,} nodes "
                f"(the limit: {ALIAS_NODES_FREE:,}, or as many as the file itself holds)",
                event,
            )


def _refusal(problem: str, event: Any) -> yaml.composer.ComposerError:
    """A composer error at `event`'s place in the file (libyaml's and PyYAML's marks alike)."""
    return yaml.composer.ComposerError(None, None, problem, event.start_mark)


def _children(node: yaml.Node | None) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class _StrictLoader(_LimitedComposer, _EventSource, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """A safe loader (no arbitrary objects) that reports duplicate keys and reads only true/false as booleans.

    PyYAML keeps the last of two equal keys without a word, so a pasted block
    can override another unseen; and YAML 1.1 reads yes/no/on/off as booleans,
    so ``GLIDEIN_Country: NO`` would become false. Duplicate keys are collected
    in `problems` (all of them, not only the first) rather than raised.
    """

    def __init__(self, stream: str) -> None:
        _EventSource.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        _LimitedComposer.__init__(self)
        self.problems: list[yaml.MarkedYAMLError] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_nodes: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = first_nodes.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it
            if first is not key_node:
                self.problems.append(
                    yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {_cut(repr(key))} (first set on line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
                )
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _yaml_problem(path: Path, err: yaml.MarkedYAMLError) -> str:
    """``file:line:column: problem``, without PyYAML's echo of the line (it may hold a secret)."""
    mark = err.problem_mark or err.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    context = ""
    if err.context and err.problem and err.context_mark:
        context = f" ({err.context} on line {err.context_mark.line + 1})"
    problem = err.problem or err.context
    if problem and "maximum nesting depth" in problem:  # libyaml's own bound, met first by flow nesting
        problem, context = f"nested more than {MAX_DEPTH} levels deep (the limit)", ""
    return f"{where}: invalid YAML: {problem}{context}"


def _line_column(data: bytes, offset: int) -> str:
    """``line:column`` (from 1) of the byte at `offset`, counting columns in characters."""
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    line = data.count(b"\n", 0, offset) + 1
    return f"{line}:{column}"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, refusing one larger than MAX_FILE_BYTES without reading more than that."""
    chunks: list[bytes] = []
    size = 0
    try:
        with path.open("rb") as stream:
            while size <= MAX_FILE_BYTES and (chunk := stream.read(1 << 20)):  # not one buffer of the limit
                chunks.append(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the limit for one config file")
    return b"".join(chunks)


def _parse(path: Path, data: bytes) -> Any:
    """The document in `data`; every problem (all duplicate keys, else the first syntax error) raised
    as one ConfigError naming ``file:line:column``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}:{_line_column(data, err.start)}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_problem(path, err)) from None
    except yaml.reader.ReaderError as err:
        # libyaml counts the offset in bytes of the UTF-8 text, PyYAML in characters
        offset = err.position if _READER_OFFSETS_IN_BYTES else len(text[: err.position].encode("utf-8"))
        char = err.character if isinstance(err.character, int) else ord(err.character)
        raise ConfigError(
            f"{path}:{_line_column(data, offset)}: invalid YAML: {err.reason} (character #x{char:04x})"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.problems:
        raise _Problems([_yaml_problem(path, problem) for problem in loader.problems])
    # aliases share containers: copy so that one merge into them cannot change two keys
    return _fresh(document) if loader.used_aliases else document


class _Problems(ConfigError):
    """Several problems found in one file, kept apart so that `load_layered` can list them with others."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(_listed(problems))
        self.problems = problems


def _listed(problems: list[str], *, header_for_one: bool = False, total: int | None = None) -> str:
    """``invalid configuration (N problems):`` and one indented line each (one alone: just that line,
    unless `header_for_one`); at most MAX_PROBLEMS_SHOWN, the rest (up to `total`) counted."""
    total = len(problems) if total is None else total
    if total == 1 and not header_for_one:
        return problems[0]
    shown = problems[:MAX_PROBLEMS_SHOWN]
    lines = "\n".join(f"  {problem}" for problem in shown)
    if total > len(shown):
        lines += f"\n  ... and {total - len(shown)} more problems"
    count = f"{total} problem{'s' if total != 1 else ''}"
    return f"invalid configuration ({count}):\n{lines}"


def read_yaml(path: Path) -> dict[Any, Any]:
    """One file's top-level mapping (empty file: empty mapping).

    Every failure is a ConfigError naming the file (and where the YAML is at
    fault, its line and column), so the operator knows which of several
    layered files to open. Limits: MAX_FILE_BYTES, MAX_DEPTH, ALIAS_NODES_FREE.
    """
    data = _parse(path, _read_bytes(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, not a {type(data).__name__}")
    return data


_DROP_IN_SUFFIX = ".yaml"


def layer_files(main_path: Path) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """The files to read, in order: the main file, then ``<stem>.d/*.yaml`` by name.

    Also returns one note for every other name in the folder, saying why it
    is not read: a file an operator believes active but is not is worse than
    a warning. That covers ``.yml`` and ``.YAML`` (only ``.yaml``, in lower
    case, is read: one spelling, as in ``ls *.yaml``), backups (``~``,
    ``.bak``, ``.rpmnew``), hidden files (editor swap and lock files too:
    harmless to mention, and a hidden ``.yaml`` looks disabled but may not be
    meant so), folders, symlink loops and dangling symlinks. A ``*.yaml`` regular
    file that cannot be read is not skipped: reading it fails with an error.
    """
    drop_dir = main_path.with_name(f"{main_path.stem}.d")
    if not drop_dir.exists():
        if drop_dir.is_symlink():  # meant to be there: say why it is not read
            return (main_path,), (f"{drop_dir}: ignored, {_why_not_a_file(drop_dir)}",)
        return (main_path,), ()
    if not drop_dir.is_dir():
        raise ConfigError(f"{drop_dir}: expected a directory of *.yaml drop-in files")
    try:
        names = sorted(os.listdir(drop_dir))
    except OSError as err:
        raise ConfigError(f"{drop_dir}: cannot list: {err.strerror or err}") from None
    drop_ins: list[Path] = []
    notes: list[str] = []
    for name in names:
        path = drop_dir / name
        reason = _why_skipped(path)
        if reason is None:
            drop_ins.append(path)
        else:
            notes.append(f"{path}: ignored, {reason}")
    return (main_path, *drop_ins), tuple(notes)


def _why_skipped(path: Path) -> str | None:
    """Why the drop-in folder's `path` is not read, or None if it is."""
    name = path.name
    if name.startswith("."):
        return "a hidden file (only visible *.yaml files are read)"
    if not name.endswith(_DROP_IN_SUFFIX):
        stem, dot, suffix = name.rpartition(".")
        if dot and stem and suffix.lower() in ("yaml", "yml"):
            return f"only *.yaml files are read (rename it to {stem}.yaml to use it)"
        return "only *.yaml files are read"
    return _why_not_a_file(path)


def _why_not_a_file(path: Path) -> str | None:
    """Why `path` is no regular file to read (a folder, a loop ...), or None if it is one."""
    try:
        info = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop"
        if path.is_symlink():
            return f"a dangling symlink (to {os.readlink(path)})"
        return f"cannot be examined: {err.strerror or err}"
    if stat.S_ISDIR(info.st_mode):
        return "a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return None


# --------------------------------------------------------------------------
# Merging with provenance
# --------------------------------------------------------------------------


@dataclass
class _Layers:
    """The merge so far: the data, which file(s) set each key path, conflicts, and the secrets seen.

    A leaf's origin is the one file whose value won; a mapping's origin is
    every file that contributed to it (used to blame a missing key). Every
    step costs in proportion to the value merged (or the value it replaces),
    so a merge is linear in the size of the configuration.
    """

    data: dict[Any, Any] = field(default_factory=dict)
    origins: dict[KeyPath, tuple[Path, ...]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    """Every value under a secret key (see `is_secret`), to scrub from any message that repeats it."""


def _fresh(value: Any) -> Any:
    """A copy with no shared containers: YAML aliases must not make one merge change two keys."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


def _same(old: Any, new: Any) -> bool:
    """Equal and of the same type: 1 and true, or 1 and 1.0, are a real change."""
    return type(old) is type(new) and old == new


def _forget_tree(layers: _Layers, path: KeyPath, old: Any) -> None:
    """Forget who set `old` at `path` and below: only mappings record origins below themselves."""
    layers.origins.pop(path, None)
    if isinstance(old, dict):
        for key, child in old.items():
            _forget_tree(layers, (*path, key), child)


def _record_tree(layers: _Layers, path: KeyPath, value: Any, file: Path) -> None:
    layers.origins[path] = (file,)
    if isinstance(value, dict):
        for key, child in value.items():
            _record_tree(layers, (*path, key), child, file)


def _collect_secrets(path: KeyPath, value: Any, into: set[str]) -> None:
    """Add the text of every secret value in `value` (at `path`) to `into`."""
    if isinstance(value, dict):
        for key, child in value.items():
            _collect_secrets((*path, key), child, into)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _collect_secrets((*path, index), child, into)
    elif value is not None and not isinstance(value, bool) and is_secret(path):
        text = str(value)
        if len(text) >= _SCRUB_MIN and len(into) < _SCRUBBED_MAX:
            into.add(text)


def _merge(layers: _Layers, target: dict[Any, Any], layer: Mapping[Any, Any], file: Path, prefix: KeyPath = ()) -> None:
    """Deep-merge one file's mapping into `target`: mappings by key, anything else replaced."""
    for key, new in layer.items():
        path = (*prefix, key)
        old = target.get(key, _MISSING)
        if isinstance(old, dict) and isinstance(new, dict):
            layers.origins[path] = (*layers.origins.get(path, ()), file)
            _merge(layers, old, new, file, path)
            continue
        if old is not _MISSING and not _same(old, new):
            layers.warnings.append(_conflict(path, layers.origins.get(path, ()), old, file, new))
        _collect_secrets(path, new, layers.secrets)
        target[key] = new  # no container is shared: `read_yaml` copies what aliases share
        if old is not _MISSING:
            _forget_tree(layers, path, old)
        _record_tree(layers, path, new, file)


def _conflict(path: KeyPath, old_files: tuple[Path, ...], old: Any, file: Path, new: Any) -> str:
    """The warning text for one key set to different values by two files."""
    old_from = ", ".join(str(f) for f in old_files) or "an earlier file"
    return (
        f"{_shown_path(path)}: {old_from} sets {_show(path, old)}, {file} sets {_show(path, new)}; "
        f"using {_show(path, new)} (later file wins)"
    )


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_@:-]+")
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SECRET_WORD_FORMS = frozenset(
    (*_SECRET_WORDS, *(f"{word}s" for word in _SECRET_WORDS), "passwd", "passphrase", "apikey")
)
_NOT_SECRET_TAILS = frozenset(
    (
        *("file", "files", "dir", "directory", "path", "paths", "url", "env", "variable"),
        *("seconds", "minutes", "hours", "days", "lifetime", "count", "size", "bytes"),
        *("name", "names", "id", "identity", "domain", "issuer", "subject", "scope", "scopes"),
        *("kind", "type", "algorithm", "uid", "gid", "user", "owner", "mode"),
    )
)
"""A key whose last word is one of these describes a secret (where it is, how long it lives), but
its value is not one: ``signing_key_file``, ``pilot_tokens.lifetime_seconds``, ``token_file``."""
_SCRUBBED_MAX = 1000
"""Secret values remembered for scrubbing: a real config has a handful; the bound keeps a hostile one
(a million ``x_token:`` keys) from making each message cost a million searches."""
_PATH_SHOWN_MAX = 200
"""Key paths in messages are cut to about this many characters (a key may be megabytes long)."""
_SCRUB_MIN = 5
"""Shorter secret values are not scrubbed from message text (they would mangle ordinary words);
they are still never shown as values."""


def dotted(path: KeyPath) -> str:
    """``entries.site1.limits.max_idle``; list items as ``[0]``, odd keys quoted."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            key = str(part)
            text += "." + (key if _PLAIN_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False))
    return text.lstrip(".")


def _words(key: Any) -> list[str]:
    """``SSH_Key`` -> ssh, key; ``ClientSecret`` -> client, secret; ``pilot-tokens`` -> pilot, tokens."""
    return [word.lower() for word in _WORD.findall(str(key))]


@functools.lru_cache(maxsize=4096)  # a pure function of the key, asked for every value merged
def _names_secret(key: Any) -> bool:
    words = _words(key)
    return bool(words) and words[-1] not in _NOT_SECRET_TAILS and any(w in _SECRET_WORD_FORMS for w in words)


def is_secret(path: KeyPath) -> bool:
    """Whether the value at `path` is a secret, never to be shown.

    A value is secret when its own key names one (token, password, secret,
    key: ``SSH_Key``, ``influxdb.token``; list items count under their list's
    key), unless the key's last word says what it describes instead
    (``token_file``, ``signing_key_file``, ``lifetime_seconds``). A value in a
    mapping under such a key is secret too unless its own key says what it is
    (``passwords: {alice: ...}`` hides alice's, ``pilot_tokens`` hides
    nothing of its settings). Values shaped like secrets (a JWT, a PEM block,
    a password in a URL: `updraft.redact`) are masked wherever they are.
    """
    keys = [part for part in path if not (isinstance(part, int) and not isinstance(part, bool))]
    if not keys:
        return False
    own = keys[-1]
    if _names_secret(own):
        return True
    own_words = _words(own)
    described = bool(own_words) and own_words[-1] in _NOT_SECRET_TAILS
    return len(keys) >= 2 and _names_secret(keys[-2]) and not described


def _shown_path(path: KeyPath) -> str:
    """`dotted` for a message, cut to about _PATH_SHOWN_MAX characters."""
    text = dotted(path)
    return text if len(text) <= _PATH_SHOWN_MAX else text[: _PATH_SHOWN_MAX - 3] + "..."


def _redact(path: KeyPath, value: Any) -> Any:
    """`value` with every secret in it, at any depth, replaced by ``<redacted>``."""
    if isinstance(value, dict):
        return {k: _redact((*path, k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact((*path, i), v) for i, v in enumerate(value)]
    if is_secret(path):
        return _REDACTED
    return value


def _show(path: KeyPath, value: Any) -> str:
    """The value for a message: secrets redacted (by key, then by shape), cut to about 60 characters."""
    return _cut(redact.redact(repr(_redact(path, value))))


def _cut(text: str) -> str:
    """`text` cut to about _SHOW_MAX characters (after masking: a cut secret would no longer match)."""
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _scrub(text: str, secrets: set[str]) -> str:
    """`text` with every known secret value, and anything shaped like a secret, masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, repr(_REDACTED))
    return redact.redact(text)


def _origin(layers: _Layers, path: KeyPath, main_path: Path) -> tuple[Path, ...]:
    """The file(s) to blame for `path`: its own setter, else its nearest parent's."""
    return _origin_in(layers.origins, path, main_path)


def _origin_in(origins: Mapping[KeyPath, tuple[Path, ...]], path: KeyPath, main_path: Path) -> tuple[Path, ...]:
    for end in range(len(path), 0, -1):
        if path[:end] in origins:
            return origins[path[:end]]
    return (main_path,)


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and pick the model out of ``X | None``-style unions."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else annotation
    return annotation


def _model_at(model: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The model that validates the mapping at `path`, to list the keys it allows."""
    current: Any = model
    for part in path:
        origin = get_origin(current)
        if origin in (dict, Mapping):
            current = get_args(current)[1]
        elif origin in (list, tuple):
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return None
            current = info.annotation
        else:
            return None
        current = _unwrap(current)
    if get_origin(current) is None and isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def model_at(model: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The model that validates the mapping at `path` of `model`, if a model does (for listing its keys)."""
    return _model_at(model, path)


_PLAIN_MESSAGES = {
    "missing": "required key is missing",
    "model_type": "expected a mapping of keys to values",
    "dict_type": "expected a mapping of keys to values",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
}


def _explain(error: ErrorDetails, path: KeyPath, model: type[BaseModel]) -> str:
    """What was expected, in an operator's words, plus the offending value."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key{_allowed_keys(error, model, path)}"
    message = _PLAIN_MESSAGES.get(kind, error["msg"])
    if kind == "value_error":  # a validator's own ValueError: its text, without pydantic's "Value error, "
        message = str(error.get("ctx", {}).get("error", message))
    if kind == "missing":
        return message
    return f"{message} (got {_show(path, error['input'])})"


def _allowed_keys(error: ErrorDetails, model: type[BaseModel], path: KeyPath) -> str:
    """The keys allowed beside an unknown one: the error's own list (a model validating a mapping
    it assembled itself, like a factory entry and its grid type's settings), else the model's."""
    allowed = error.get("ctx", {}).get("allowed")
    if allowed is None:
        parent = _model_at(model, path[:-1])
        allowed = ", ".join(parent.model_fields) if parent else None
    return f" (allowed: {allowed})" if allowed else ""


def _problem(error: ErrorDetails, layers: _Layers, model: type[BaseModel], main_path: Path) -> str:
    """One line per validation error: ``file: key.path: what was expected (got ...)``."""
    loc = tuple(error["loc"])
    is_key = bool(loc) and loc[-1] == "[key]"
    path = loc[:-1] if is_key else loc
    files = ", ".join(str(f) for f in _origin(layers, path, main_path))
    explanation = _explain(error, path, model)
    if is_key:
        explanation = f"invalid key: {explanation}"
    return f"{files}: {_shown_path(path) or '(top level)'}: {explanation}"


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A validated configuration, the files it came from, and the merge warnings."""

    config: M
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    origins: Mapping[KeyPath, tuple[Path, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Which file(s) set each key path (see `files_for`)."""

    def files_for(self, path: KeyPath) -> tuple[Path, ...]:
        """The file(s) to edit for the value at `path`, for problems found after loading
        (e.g. a grid type's checks in ``check-config``)."""
        return _origin_in(self.origins, path, self.files[0])


def _validate(layers: _Layers, model: type[M], main_path: Path) -> M:
    """Validate the merged data; all problems become one ConfigError, each naming its file."""
    try:
        return model.model_validate(layers.data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        problems = [_problem(e, layers, model, main_path) for e in errors[:MAX_PROBLEMS_SHOWN]]
        message = _listed(problems, header_for_one=True, total=len(errors))
        raise ConfigError(_scrub(message, layers.secrets)) from None


def _read_all(files: tuple[Path, ...], layers: _Layers) -> None:
    """Read and merge every file; the problems of all of them, not only the first file's, in one error."""
    problems: list[str] = []
    for file in files:
        try:
            data = read_yaml(file)
        except _Problems as err:
            problems.extend(err.problems)
            continue
        except ConfigError as err:
            problems.append(str(err))
            continue
        if not problems:  # after a broken file, only look for more problems
            _merge(layers, layers.data, data, file)
    if problems:
        raise ConfigError(_scrub(_listed(problems), layers.secrets))


def load_layered(
    main_path: Path | str, model: type[M], *, on_warning: Callable[[str], None] | None = None
) -> Loaded[M]:
    """Read `main_path` and its ``<stem>.d/*.yaml`` drop-ins, merge, and validate as `model`.

    Warnings (conflicting values, ignored files) go to `on_warning` before
    validation, so they are seen even when validation then fails and may
    explain why; by default they are logged on ``updraft.config`` (a daemon's
    log), while a command that prints them itself passes its own callback
    to avoid saying everything twice. Warnings are redacted as errors are.
    Raises ConfigError on any problem, listing every problem found: each
    file's YAML problems (all duplicate keys, the first syntax error), else
    every validation problem.
    """
    main_path = Path(main_path)
    files, notes = layer_files(main_path)
    layers = _Layers()
    with _cyclic_gc_paused():
        _read_all(files, layers)
        # built from key paths, file names and `_show`n values only: masking shapes is enough (and linear)
        warnings = tuple(redact.redact(warning) for warning in (*notes, *layers.warnings))
        for warning in warnings:
            (on_warning or _log_warning)(warning)
        config = _validate(layers, model, main_path)
    return Loaded(config, files, warnings, MappingProxyType(dict(layers.origins)))


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Load without Python's cyclic garbage collector, as it was before if it was on.

    Reading builds millions of small objects, none of them in a cycle; the
    collector would scan the growing heap again and again, more than halving
    the speed for a 10 MB drop-in (``bench/config_load.py``). Reference
    counting still frees everything dropped meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _log_warning(warning: str) -> None:
    log.warning("%s", warning)

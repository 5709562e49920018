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

import itertools
import logging
import math
import re
from collections.abc import Callable, Mapping
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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads only true/false as booleans.

    PyYAML keeps the last of two equal keys without a word, so a pasted block
    can override another unseen; and YAML 1.1 reads yes/no/on/off as booleans,
    so ``GLIDEIN_Country: NO`` would become false.
    """

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
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first set on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _yaml_problem(path: Path, err: yaml.MarkedYAMLError) -> str:
    """``file:line:column: problem``, without PyYAML's echo of the line (it may hold a secret)."""
    mark = err.problem_mark or err.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    context = ""
    if err.context and err.problem and err.context_mark:
        context = f" ({err.context} on line {err.context_mark.line + 1})"
    return f"{where}: invalid YAML: {err.problem or err.context}{context}"


def read_yaml(path: Path) -> dict[Any, Any]:
    """One file's top-level mapping (empty file: empty mapping).

    Every failure is a ConfigError naming the file, so the operator knows
    which of several layered files to open.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_problem(path, err)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, not a {type(data).__name__}")
    return data


def layer_files(main_path: Path) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """The files to read, in order: the main file, then ``<stem>.d/*.yaml`` by name.

    Also returns notes for ``*.yml`` drop-ins, which are not read: a file an
    operator believes active but is not is worse than a warning. Hidden files
    (editor locks and swap files) are skipped.
    """
    drop_dir = main_path.with_name(f"{main_path.stem}.d")
    if not drop_dir.exists():
        return (main_path,), ()
    if not drop_dir.is_dir():
        raise ConfigError(f"{drop_dir}: expected a directory of *.yaml drop-in files")
    try:
        names = sorted((p for p in drop_dir.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    except OSError as err:
        raise ConfigError(f"{drop_dir}: cannot list: {err.strerror or err}") from None
    drop_ins = tuple(p for p in names if p.suffix == ".yaml" and p.is_file())
    notes = tuple(f"{p}: ignored, only *.yaml files are read" for p in names if p.suffix == ".yml")
    return (main_path, *drop_ins), notes


# --------------------------------------------------------------------------
# Merging with provenance
# --------------------------------------------------------------------------


@dataclass
class _Layers:
    """The merge so far: the data, which file(s) set each key path, and conflicts.

    A leaf's origin is the one file whose value won; a mapping's origin is
    every file that contributed to it (used to blame a missing key).
    """

    data: dict[Any, Any] = field(default_factory=dict)
    origins: dict[KeyPath, tuple[Path, ...]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


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


def _record(layers: _Layers, path: KeyPath, value: Any, file: Path) -> None:
    """Forget who set the old value at `path` and below; `file` set the new one."""
    for stale in [p for p in layers.origins if p[: len(path)] == path]:
        del layers.origins[stale]
    _record_tree(layers, path, value, file)


def _record_tree(layers: _Layers, path: KeyPath, value: Any, file: Path) -> None:
    layers.origins[path] = (file,)
    if isinstance(value, dict):
        for key, child in value.items():
            _record_tree(layers, (*path, key), child, file)


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
        target[key] = _fresh(new)
        _record(layers, path, new, file)


def _conflict(path: KeyPath, old_files: tuple[Path, ...], old: Any, file: Path, new: Any) -> str:
    """The warning text for one key set to different values by two files."""
    old_from = ", ".join(str(f) for f in old_files) or "an earlier file"
    return (
        f"{dotted(path)}: {old_from} sets {_show(path, old)}, {file} sets {_show(path, new)}; "
        f"using {_show(path, new)} (later file wins)"
    )


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_@:-]+")


def dotted(path: KeyPath) -> str:
    """``entries.site1.limits.max_idle``; list items as ``[0]``, odd keys quoted."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            key = _cut(str(part))
            text += "." + (key if _PLAIN_KEY.fullmatch(key) else '"' + key.replace('"', '\\"') + '"')
    return text.lstrip(".")


def _cut(key: str) -> str:
    """A key as a message shows it: one longer than any name may be (see `MAX_NAME_LENGTH`) is cut."""
    return key if len(key) <= MAX_NAME_LENGTH else key[: _SHOW_MAX - 3] + "..."


def is_secret(path: KeyPath) -> bool:
    """A value under a key naming a token, password, secret or key is never shown."""
    return any(word in str(part).lower() for part in path for word in _SECRET_WORDS)


def _redact(path: KeyPath, value: Any) -> Any:
    """`value` with every secret in it, at any depth, replaced by ``<redacted>``."""
    if is_secret(path):
        return _REDACTED
    if isinstance(value, dict):
        return {k: _redact((*path, k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact((*path, i), v) for i, v in enumerate(value)]
    return value


def _show(path: KeyPath, value: Any) -> str:
    """The value for a message: secrets redacted, cut to about 60 characters."""
    text = repr(_redact(path, value))
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


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
    return f"{files}: {dotted(path) or '(top level)'}: {explanation}"


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
        problems = [_problem(e, layers, model, main_path) for e in err.errors(include_url=False)]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigError(f"invalid configuration ({count}):\n{lines}") from None


def load_layered(
    main_path: Path | str, model: type[M], *, on_warning: Callable[[str], None] | None = None
) -> Loaded[M]:
    """Read `main_path` and its ``<stem>.d/*.yaml`` drop-ins, merge, and validate as `model`.

    Warnings (conflicting values, ignored files) go to `on_warning` before
    validation, so they are seen even when validation then fails and may
    explain why; by default they are logged on ``updraft.config`` (a daemon's
    log), while a command that prints them itself passes its own callback
    to avoid saying everything twice. Raises ConfigError on any problem.
    """
    main_path = Path(main_path)
    files, notes = layer_files(main_path)
    layers = _Layers()
    for file in files:
        _merge(layers, layers.data, read_yaml(file), file)
    warnings = (*notes, *layers.warnings)
    for warning in warnings:
        (on_warning or _log_warning)(warning)
    return Loaded(_validate(layers, model, main_path), files, warnings, MappingProxyType(dict(layers.origins)))


def _log_warning(warning: str) -> None:
    log.warning("%s", warning)

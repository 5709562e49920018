"""Pilot submit descriptions: one Jinja2 template per grid type, rendered to a plain dict.

Each grid type's plugin (`updraft.factory.gridtypes`) names its template,
checks its entries and says whether it takes CE credentials and files;
this module knows no grid type by name.

Rendering is pure (config and a PilotSpec in, ``{command: value}`` out), so
every grid type is checked without a pool; one shared adapter submits the
dict. Templates decide which commands a grid type needs; this module
decides how a value is written, because values come from config files and
frontends' requests and must never turn into extra commands:

- a line break anywhere in a value is refused, naming the field, since the
  submit language is one command per line;
- ``$`` is written ``$(DOLLAR)`` (see `_no_macros`), so no value can expand
  a submit macro; the only macros are the ones the templates write;
- ClassAd strings are quoted with ``classad2.quote``, so a ``"`` stays
  inside its string.

The ``+Updraft*`` job attributes are the factory's whole memory: a restarted
factory rebuilds its view of its pilots from its queue alone.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote as percent_encode

import classad2
import jinja2

from updraft import pilot_ad, userdata
from updraft.config import KeyPath, dotted
from updraft.errors import ConfigError, UpdraftError
from updraft.factory import gridtypes
from updraft.factory.config import LINE_BREAK_PROBLEM, SUBMIT_LINE_BREAKS, Entry, FactoryConfig, line_breaks, nodes_in
from updraft.factory.gridtypes import GridTypePlugin, cloud
from updraft.factory.gridtypes.plugin import DEFAULT_TEMPLATE_PACKAGE

# Job attributes every pilot carries (read back by the factory's queue queries).
J_PILOT = pilot_ad.PILOT
J_FACTORY = pilot_ad.FACTORY
J_ENTRY = pilot_ad.ENTRY
J_FRONTEND = pilot_ad.FRONTEND
J_GROUP = pilot_ad.GROUP
J_SECURITY_CLASS = pilot_ad.SECURITY_CLASS
J_CREDENTIAL_ID = pilot_ad.CREDENTIAL_ID

JOB_ID_MACRO = "$(Cluster).$(Process)"
LOG_FILE = "pilots.log"

_SUBMIT_KEY = re.compile(r"\+?[A-Za-z_][A-Za-z0-9_.]*")
_NEEDS_QUOTES = frozenset(" \t'\"")
_DOLLARS = re.compile(r"\$+")


class RenderError(UpdraftError):
    """A pilot's submit description cannot be rendered from what the factory was given."""


@dataclass(frozen=True)
class PilotSpec:
    """Whom a pilot is for and where its files go: what the config alone does not say.

    `work_dir` is this entry and frontend's folder for the pilots' job event
    log and output. `proxy_file` and `token_file` authenticate the factory
    to the CE (only for grid types that take them, e.g. condor and arc);
    they are paths, never secrets.
    """

    frontend: str
    group: str
    security_class: str
    credential_id: str
    executable: Path
    work_dir: Path
    proxy_file: Path | None = None
    token_file: Path | None = None
    pilot_token_file: Path | None = None
    """The token the pilot's startd joins the VO pool with (from the frontend's sealed credential):
    sent with the pilot by encrypted input transfer, never written into the description itself."""
    user_data_file: Path | None = None
    """Cloud pilots: the file holding the token as the VM's user data carries it (`GridTypePlugin.secret_user_data`),
    named by the description so the token is never in the job ad."""
    vm_manifest: tuple[str, str] | None = None
    """Cloud pilots: (URL, SHA-256) of the entry's staging manifest, which lists the glidein the VM fetches."""
    arguments: tuple[str, ...] = ()
    environment: tuple[tuple[str, object], ...] = ()
    """The pilot's settings (`updraft.factory.pilot_args`); the entry's ``pilot_attributes`` are added
    by the template context unless they are already here."""


class _Escaped(str):
    """Text already written in the submit language; `_finalize` leaves it alone."""


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def submit_templates(package: str = DEFAULT_TEMPLATE_PACKAGE) -> jinja2.Environment:
    """The template environment: a missing variable is an error, never an empty string.

    `package` is the one holding a grid type's template (a third party's);
    ours stay reachable behind it, so its template can extend ``pilot.sub.j2``.
    """
    env = jinja2.Environment(
        loader=_template_loader(package),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters.update(classad=classad_literal, environment=environment_value)
    return env


def _template_loader(package: str) -> jinja2.BaseLoader:
    ours = jinja2.PackageLoader(DEFAULT_TEMPLATE_PACKAGE, "templates")
    if package == DEFAULT_TEMPLATE_PACKAGE:
        return ours
    return jinja2.ChoiceLoader([jinja2.PackageLoader(package, "templates"), ours])


def render_submit_text(factory: FactoryConfig, entry_name: str, entry: Entry, pilot: PilotSpec) -> str:
    """The submit description as the template wrote it (``key = value`` lines, with comments)."""
    check_entry(entry_name, entry)
    plugin = entry.grid_plugin
    _check_pilot(plugin, pilot)
    context = _context(factory, entry_name, entry, pilot, plugin.template)
    try:
        return submit_template(plugin).render(context)
    except jinja2.UndefinedError as err:
        raise RenderError(f"template {plugin.template}: {err}") from err


def submit_template(plugin: GridTypePlugin) -> jinja2.Template:
    """The grid type's template, compiled: ConfigError if the installation lacks it or it does not parse,
    so ``check-config`` can prove a grid type's template shipped (a third party's too)."""
    missing = f"grid type {plugin.name}: template {plugin.template} not found in {plugin.template_package}/templates"
    try:
        env = submit_templates(plugin.template_package)
    except (ImportError, ValueError) as err:  # what PackageLoader raises for no such package or folder
        raise ConfigError(f"{missing} ({err})") from err
    try:
        return env.get_template(plugin.template)
    except jinja2.TemplateNotFound as err:
        raise ConfigError(missing) from err
    except jinja2.TemplateSyntaxError as err:
        raise ConfigError(
            f"grid type {plugin.name}: template {err.name or plugin.template}, line {err.lineno}: {err.message}"
        ) from err


def render_submit(factory: FactoryConfig, entry_name: str, entry: Entry, pilot: PilotSpec) -> dict[str, str]:
    """The submit description of one pilot, as a plain dict for ``htcondor2.Submit``.

    ``+Attr`` keys are kept as written; ``htcondor2.Submit`` accepts them and
    stores them as ``MY.Attr``.
    """
    return parse_submit(render_submit_text(factory, entry_name, entry, pilot))


def parse_submit(text: str) -> dict[str, str]:
    """``key = value`` lines to a dict; blank lines and ``#`` comments are skipped.

    Keys are checked (``+Attr`` allowed) and may appear once, ignoring case
    as HTCondor does, so a template slip cannot silently override a command.
    """
    commands: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, equals, value = stripped.partition("=")
        key = key.strip()
        if not equals or not _SUBMIT_KEY.fullmatch(key):
            raise RenderError(f"line {number}: expected 'key = value', got {stripped!r}")
        if key.lower() in first_line:
            raise RenderError(f"line {number}: {key} is set twice (first on line {first_line[key.lower()]})")
        first_line[key.lower()] = number
        commands[key] = value.strip()
    return commands


def check_entry(entry_name: str, entry: Entry) -> None:
    """Refuse an entry no pilot can be rendered for, naming every key to fix (one per ``; ``)."""
    problems = entry_problems(entry_name, entry)
    if problems:
        raise ConfigError("; ".join(f"{dotted(path)}: {message}" for path, message in problems))


def entry_problems(entry_name: str, entry: Entry) -> list[tuple[KeyPath, str]]:
    """Every reason no pilot can be rendered for an entry, each with its key path in the config.

    A loaded config has none (the entry's validation runs the same checks and
    refuses it, see `updraft.factory.config.Entry`); this is the last guard
    for an entry built some other way (``model_construct``, a test).
    """
    where = ("entries", entry_name)
    plugin = entry.grid_plugin
    return [
        *_line_breaks(where, {"name": entry_name, **entry.model_dump(exclude={"attributes"})}),
        *(
            ((*where, *problem.key.split(".")), problem.message)
            for problem in plugin.problems(entry.grid, entry.resource)
        ),
    ]


# --------------------------------------------------------------------------
# Writing values in the submit language (also the templates' filters)
# --------------------------------------------------------------------------


def _plain(value: object) -> str:
    """A config or request value as text: ClassAd spelling for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _no_macros(text: str) -> str:
    """`text` with no submit macro left in it.

    HTCondor reads ``$$`` as a pair it leaves alone, so a run of dollars
    keeps its pairs and only an odd last ``$`` (which would start ``$(x)``,
    ``$ENV(x)``...) becomes ``$(DOLLAR)``; writing every ``$`` that way
    would fail, since ``$`` then ``$(DOLLAR)`` reads as a ``$$(DOLLAR)`` pair.
    A literal ``$(DOLLAR)`` cannot be written at all (HTCondor expands it
    again after expanding ``$(DOLLAR)``), so it is refused.
    """

    def escape(run: re.Match[str]) -> str:
        odd = len(run[0]) % 2
        if odd and text[run.end() : run.end() + len("(DOLLAR)")].upper() == "(DOLLAR)":
            raise RenderError(f"{text!r}: a literal '$(DOLLAR)' cannot be written in a submit description")
        return "$" * (len(run[0]) - odd) + "$(DOLLAR)" * odd

    return _DOLLARS.sub(escape, text)


def classad_literal(value: str | int | float | bool) -> _Escaped:
    """A ClassAd literal for a ``+Attr`` line: strings quoted and escaped, numbers and booleans bare."""
    if isinstance(value, bool):
        return _Escaped("true" if value else "false")
    if isinstance(value, (int, float)):
        return _Escaped(repr(value))
    return _Escaped(_no_macros(classad2.quote(value)))


def _word(value: str) -> str:
    """One word of the new argument/environment syntax: single-quoted when it has blanks or quotes."""
    if value == "" or any(ch in _NEEDS_QUOTES for ch in value):
        return "'" + value.replace("'", "''") + "'"
    return value


def _new_syntax(words: Iterable[str]) -> _Escaped:
    """Words joined into HTCondor's double-quoted new syntax, where a literal ``"`` is doubled."""
    return _Escaped('"' + " ".join(words).replace('"', '""') + '"')


def arguments_value(arguments: Iterable[str]) -> _Escaped:
    """The ``arguments`` command, each argument kept whole whatever it contains."""
    return _new_syntax(_word(_no_macros(arg)) for arg in arguments)


def _raw_or_escaped(value: object) -> str:
    return str(value) if isinstance(value, _Escaped) else _no_macros(_plain(value))


def environment_value(variables: Iterable[tuple[str, object]]) -> _Escaped:
    """The ``environment`` command (new syntax) for NAME, value pairs."""
    return _new_syntax(f"{name}={_word(_raw_or_escaped(value))}" for name, value in variables)


def _encoded_pairs(variables: Iterable[tuple[str, object]]) -> list[str]:
    """``NAME=value`` with the value percent-encoded (macros like the job id kept as written)."""
    return [
        f"{name}={value if isinstance(value, _Escaped) else percent_encode(_plain(value), safe='')}"
        for name, value in variables
    ]


def user_data(variables: Iterable[tuple[str, object]]) -> _Escaped:
    """A VM's user data (the part in the job ad, `updraft.userdata`'s format): a URL query string, one
    line; values percent-encoded, so no comma, space or ``$`` is left, except the job id macro, kept as
    written for the schedd to expand (`userdata.encode` would encode it too)."""
    return _Escaped("&".join(_encoded_pairs(variables)))


def _finalize(value: object) -> object:
    """Every ``{{ value }}``: escaped unless a filter already wrote it in the submit language."""
    if isinstance(value, jinja2.Undefined):
        return value  # StrictUndefined raises when it is turned into text
    if isinstance(value, _Escaped):
        text = str(value)
    elif isinstance(value, (str, int, float, PurePath)):
        text = _no_macros(_plain(value))
    else:
        raise RenderError(f"cannot write a {type(value).__name__} ({value!r}) into a submit description")
    if not SUBMIT_LINE_BREAKS.isdisjoint(text):
        raise RenderError(f"a value with a line break reached the template: {text!r}")
    return text


# --------------------------------------------------------------------------
# Checks and the template context
# --------------------------------------------------------------------------


def _line_breaks(where: KeyPath, value: object) -> Iterator[tuple[KeyPath, str]]:
    """A problem for every field (at any depth) whose text holds a line break."""
    for path, text in line_breaks(where, value):
        yield path, f"{LINE_BREAK_PROBLEM} (got {text!r})"


def _check_pilot(plugin: GridTypePlugin, pilot: PilotSpec) -> None:
    broken = list(_line_breaks(("pilot",), dataclasses.asdict(pilot)))
    if broken:
        raise RenderError("; ".join(f"{dotted(path)}: {message}" for path, message in broken))
    for name in ("frontend", "group", "security_class", "credential_id"):
        if not getattr(pilot, name):
            raise RenderError(f"pilot.{name}: must not be empty (the factory finds its pilots by it)")
    for name in ("executable", "work_dir", "proxy_file", "token_file", "pilot_token_file", "user_data_file"):
        path = getattr(pilot, name)
        if path is not None and not path.is_absolute():
            raise RenderError(
                f"pilot.{name}: expected an absolute path, got {str(path)!r} "
                "(the schedd does not run in the factory's directory)"
            )
    has_credential = pilot.proxy_file is not None or pilot.token_file is not None
    if has_credential and plugin.ce_credentials == "refused":
        raise RenderError(
            f"pilot.proxy_file/token_file: {plugin.name} entries do not use them "
            f"(only {' and '.join(_credential_users())} entries authenticate to a CE with them)"
        )
    if pilot.pilot_token_file is not None and not plugin.transfers_files:
        raise RenderError(
            f"pilot.pilot_token_file: {plugin.name} pilots are machine images that get no "
            "input files; their token travels in user data (pilot.user_data_file)"
        )
    if pilot.user_data_file is not None and plugin.secret_user_data is None:
        raise RenderError(f"pilot.user_data_file: {plugin.name} pilots take no user data")
    if plugin.secret_user_data is not None and pilot.vm_manifest is None:
        raise RenderError(
            f"pilot.vm_manifest: {plugin.name} pilots boot from the factory's staging area, which must list "
            "the glidein (configure `staging`)"
        )
    if plugin.ce_credentials == "required" and not has_credential:
        raise RenderError(f"pilot.proxy_file/token_file: an {plugin.name} CE needs one of them to accept a pilot")


def _credential_users() -> list[str]:
    """Our grid types that authenticate to their CE with a proxy or token file (for a message)."""
    return [name for name in gridtypes.BUILTIN if gridtypes.plugin(name).ce_credentials != "refused"]


def _job_attributes(factory: FactoryConfig, entry_name: str, pilot: PilotSpec) -> tuple[tuple[str, object], ...]:
    return (
        (J_PILOT, True),
        (J_FACTORY, factory.name),
        (J_ENTRY, entry_name),
        (J_FRONTEND, pilot.frontend),
        (J_GROUP, pilot.group),
        (J_SECURITY_CLASS, pilot.security_class),
        (J_CREDENTIAL_ID, pilot.credential_id),
    )


def _pilot_environment(
    factory: FactoryConfig, entry_name: str, entry: Entry, pilot: PilotSpec
) -> tuple[tuple[str, object], ...]:
    """What the pilot is told: its identity (names reserved by the config) and the entry's pilot_attributes."""
    identity = (
        ("UPDRAFT_FACTORY", factory.name),
        ("UPDRAFT_ENTRY", entry_name),
        ("UPDRAFT_FRONTEND", pilot.frontend),
        ("UPDRAFT_GROUP", pilot.group),
        ("UPDRAFT_SECURITY_CLASS", pilot.security_class),
        ("UPDRAFT_CREDENTIAL_ID", pilot.credential_id),
        ("UPDRAFT_JOB_ID", _Escaped(JOB_ID_MACRO)),
        *((("UPDRAFT_PILOT_TOKEN", pilot.pilot_token_file.name),) if pilot.pilot_token_file else ()),
    )
    settings = {**entry.pilot_attributes, **dict(pilot.environment)}
    return (*identity, *settings.items())


def _user_data_pairs(pilot: PilotSpec, environment: tuple[tuple[str, object], ...]) -> tuple[tuple[str, object], ...]:
    """What a cloud pilot's bootstrap reads (glidein/vm/updraft-vm-bootstrap): the marker, the pilot's
    environment, where its glidein is listed, then the glidein's words; the token comes from the file."""
    if pilot.vm_manifest is None:
        return ()
    url, sha256 = pilot.vm_manifest
    return (
        (userdata.USER_DATA, userdata.USER_DATA_VERSION),
        *environment,
        (userdata.VM_MANIFEST_URL, url),
        (userdata.VM_MANIFEST_SHA256, sha256),
        (userdata.VM_GLIDEIN, cloud.VM_GLIDEIN),
        *((userdata.VM_ARG, word) for word in pilot.arguments),
    )


def _cloud_tags(factory: FactoryConfig, entry_name: str, entry: Entry) -> tuple[tuple[str, object], ...]:
    """The factory's tags on every instance (how it finds its own in the API), then the entry's."""
    own: Mapping[str, str] = getattr(entry.cloud, "tags", {})
    return (
        (cloud.TAG_FACTORY, factory.name),
        (cloud.TAG_ENTRY, entry_name),
        (cloud.TAG_PILOT, _Escaped(JOB_ID_MACRO)),
        *own.items(),
    )


def _pilot_file(work_dir: Path, suffix: str) -> _Escaped:
    """One file per pilot: the job id macro stays a macro, the folder is escaped."""
    return _Escaped(f"{_no_macros(str(work_dir))}/pilot.{JOB_ID_MACRO}.{suffix}")


def _context(
    factory: FactoryConfig, entry_name: str, entry: Entry, pilot: PilotSpec, template_name: str
) -> dict[str, Any]:
    environment = _pilot_environment(factory, entry_name, entry, pilot)
    return {
        "template_name": template_name,
        "entry": entry,
        "grid": entry.grid,
        "pilot": pilot,
        "grid_resource": entry.grid_resource,
        "arguments": arguments_value(pilot.arguments),
        "pilot_env": environment,
        "user_data": user_data(_user_data_pairs(pilot, environment)),
        "cloud_tags": _cloud_tags(factory, entry_name, entry),
        "output": _pilot_file(pilot.work_dir, "out"),
        "error": _pilot_file(pilot.work_dir, "err"),
        "log": pilot.work_dir / LOG_FILE,
        "cpus": entry.cpus_per_pilot,
        "nodes": nodes_in(entry.attributes),
        "memory_mb": entry.memory_mb,
        "max_walltime_seconds": entry.max_walltime_seconds,
        "job_attributes": _job_attributes(factory, entry_name, pilot),
    }

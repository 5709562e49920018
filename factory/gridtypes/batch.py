"""Batch systems through the blahp, locally or on a remote login node over ssh (BOSCO style).

A batch entry's ``grid_resource`` is built from ``batch_system`` (and
``ssh_host``), so its ``resource`` is only a label for people (e.g.
``slurm@hpc.example.org``).

What a site needs (partition, account, walltime, nodes, cores and memory per
node, extra directives) is written as submit commands the blahp turns into
the batch script's directives (``#SBATCH ...``). The blahp passes some of
them for some batch systems only; a key the entry's batch system would not
get is refused here rather than silently dropped (docs/grid-types.md has the
table). The keys that say what a pilot brings (cores, nodes, memory,
walltime) are also common keys the rest of the factory reads
(``attributes.GLIDEIN_CPUS``, ``memory_mb``, ``max_walltime_seconds`` ...):
they fill those in, or must agree with them (`Implied`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from updraft.config import MAX_TEXT_LENGTH, ConfigModel, DurationSeconds, FrozenList, LifetimeSeconds
from updraft.factory.gridtypes.plugin import GridTypePlugin, Implied, LifetimeMargin, Problem

BatchSystem = Literal["slurm", "pbs", "lsf", "sge", "condor"]

MAX_NODES = 10_000
"""Nodes in one pilot: more than any one batch job of a pilot should span; larger is a typo."""
MAX_CPUS_PER_NODE = 4096
"""Cores of one node: more than any machine has."""
MAX_MEMORY_MB_PER_NODE = 16 * 1024 * 1024
"""16 TiB, as the entry's ``memory_mb``."""
MAX_DIRECTIVES = 64
MAX_DIRECTIVE_LENGTH = 256

_SSH_LOGIN = re.compile(
    r"(?P<user>[A-Za-z_][A-Za-z0-9_-]*)@"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
"""A login HTCondor's remote_gahp takes (its own pattern is ``[user@]host[:port]``, with a user of
letters, digits, ``_`` and ``-`` not starting with a digit, and no bracketed IPv6 address), made
stricter: the user is required and the host is a host name or an IPv4 address."""

_BATCH_WORD = re.compile(r"[A-Za-z0-9_.,:@/+-]+")
"""A partition (``a,b`` for several; ``name@cluster``), a queue (``queue@server``, HTCondor's
``schedd/pool:port``) or an account."""

_DIRECTIVE_CHARS = re.compile(r"[A-Za-z0-9_=:,.+/@%-]+")
"""What a directive may hold. The blahp writes the directives with an unquoted ``echo -e``, so a
backslash would be read as an escape, a blank would split the word, ``*?[`` would be globbed
and quotes or ``$`` are not the shell's to interpret there; none of them is needed for an option."""

_SLURM_SETS: Mapping[str, tuple[str | None, str]] = MappingProxyType(
    {
        "nodes": ("N", "set by Updraft from nodes"),
        "ntasks": ("n", "set by Updraft: one task per node"),
        "ntasks-per-node": (None, "set by Updraft: one task per node"),
        "cpus-per-task": ("c", "set by Updraft from cpus_per_node (attributes.GLIDEIN_CPUS)"),
        "time": ("t", "set by Updraft from walltime_seconds (max_walltime_seconds)"),
        "partition": ("p", "set by Updraft from partition"),
        "account": ("A", "set by Updraft from account"),
        "mem": (None, "set by Updraft from memory_mb_per_node (memory_mb)"),
        "mem-per-cpu": (None, "not for directives: memory is set by Updraft from memory_mb_per_node (memory_mb)"),
        "mem-per-gpu": (None, "not for directives: memory is set by Updraft from memory_mb_per_node (memory_mb)"),
        "output": ("o", "set by the blahp"),
        "error": ("e", "set by the blahp"),
        "array": ("a", "a pilot is one Slurm job, not an array"),
        "parsable": (None, "the blahp reads the job id from sbatch's usual output"),
        "quiet": ("Q", "the blahp reads the job id sbatch prints"),
        "wait": ("W", "the blahp would wait for the pilot to end before it learns the job id"),
        "test-only": (None, "nothing would be submitted"),
    }
)
"""sbatch options a directive may not give: long name -> (its short letter, why)."""

_SLURM_SHORT: Mapping[str, str] = MappingProxyType(
    {short: long for long, (short, _) in _SLURM_SETS.items() if short is not None}
)

_WHAT_BLAHP_PASSES: Mapping[str, frozenset[BatchSystem]] = MappingProxyType(
    {
        "nodes": frozenset({"slurm"}),
        "directives": frozenset({"slurm"}),
        "account": frozenset({"slurm", "pbs", "lsf", "sge"}),
        "memory_mb_per_node": frozenset({"slurm", "pbs", "condor"}),
    }
)
"""A key -> the batch systems whose blahp script gets it (HTCondor 23.9's blahp; others drop it)."""

_ROUNDS_TO_MINUTES: frozenset[BatchSystem] = frozenset({"slurm", "lsf"})
"""Their blahp scripts write the walltime in whole minutes (seconds divided by 60, rounded down)."""


def _check_ssh_host(value: str) -> str:
    found = _SSH_LOGIN.fullmatch(value) if len(value) <= MAX_TEXT_LENGTH else None
    if found and (found["port"] is None or 1 <= int(found["port"]) <= 65535):
        return value
    raise PydanticCustomError(
        "ssh_host",
        "expected user@host or user@host:port (the login the batch system is reached over ssh; port 1 to 65535)",
    )


def _check_directive(value: str) -> str:
    """One sbatch option, as ``--name=value`` or ``-Xvalue``, that Updraft does not set itself."""
    if not value.startswith("-"):
        raise PydanticCustomError("directive", "expected an sbatch option starting with '-', e.g. --qos=normal")
    if not _DIRECTIVE_CHARS.fullmatch(value):
        bad = next(char for char in value if not _DIRECTIVE_CHARS.fullmatch(char))
        raise PydanticCustomError(
            "directive",
            "{char} is not allowed: one option per item, written --name=value, with letters, digits and "
            "_ = : , . + / @ % - only (the blahp writes it with echo -e, unquoted)",
            {"char": repr(bad)},
        )
    refused = _refused_option(value)
    if refused is not None:
        name, why = refused
        raise PydanticCustomError("directive", "--{name}: {why}", {"name": name, "why": why})
    return value


def _refused_option(directive: str) -> tuple[str, str] | None:
    """The option Updraft or the blahp owns that `directive` gives, if any, with why.

    sbatch takes any unambiguous prefix of a long option (``--part=x`` is
    ``--partition``), so a prefix of an owned option is refused too. A short
    option is its first letter.
    """
    if directive.startswith("--"):
        given = directive[2:].split("=", 1)[0]
        owned = [name for name in _SLURM_SETS if given and name.startswith(given)]
        exact = given if given in _SLURM_SETS else None
        name = exact or (owned[0] if owned else None)
    else:
        name = _SLURM_SHORT.get(directive[1:2])
    return None if name is None else (name, _SLURM_SETS[name][1])


def _check_batch_word(value: str) -> str:
    """A partition, queue or account: one word of the batch script, with nothing a shell or the
    batch system's directive parser would read (the blahp writes it after ``#SBATCH -p``...)."""
    if len(value) <= MAX_TEXT_LENGTH and _BATCH_WORD.fullmatch(value):
        return value
    raise PydanticCustomError(
        "batch_word", "expected one word of letters, digits and _ . , : @ / + - (it is written into the batch script)"
    )


SshHost = Annotated[str, AfterValidator(_check_ssh_host)]
BatchWord = Annotated[str, AfterValidator(_check_batch_word)]
Directive = Annotated[str, Field(max_length=MAX_DIRECTIVE_LENGTH), AfterValidator(_check_directive)]


class BatchSettings(ConfigModel):
    """A batch entry's own keys."""

    batch_system: BatchSystem | None = None
    """Required: the batch system the blahp submits to (optional in the model only so that its
    absence gets a message listing the choices)."""
    ssh_host: SshHost | None = None
    """``user@host`` or ``user@host:port`` of a remote login node, reached over ssh; unset: the
    factory's own host."""
    partition: BatchWord | None = None
    """The partition (Slurm) or queue (PBS, LSF, SGE; the schedd for HTCondor) pilots go to;
    the site's default if unset. ``name@cluster`` picks a Slurm cluster too."""
    batch_queue: BatchWord | None = None
    """Deprecated: the old name of `partition`, still read when `partition` is unset."""
    account: BatchWord | None = None
    """The account (project) the pilots are charged to."""
    walltime_seconds: LifetimeSeconds | None = None
    """The batch job's time limit; the entry's ``max_walltime_seconds`` is this (set either)."""
    nodes: Annotated[int, Field(ge=1, le=MAX_NODES)] | None = None
    """Nodes per pilot (Slurm only beyond 1); the entry's ``attributes.GLIDEIN_Nodes`` is this."""
    cpus_per_node: Annotated[int, Field(ge=1, le=MAX_CPUS_PER_NODE)] | None = None
    """Cores per node; the entry's ``attributes.GLIDEIN_CPUS`` is this."""
    memory_mb_per_node: Annotated[int, Field(ge=1, le=MAX_MEMORY_MB_PER_NODE)] | None = None
    """Memory per node in MB; the entry's ``memory_mb`` is this, and its advertised
    ``attributes.GLIDEIN_MaxMemMBs`` this unless set lower."""
    directives: Annotated[FrozenList[Directive], Field(max_length=MAX_DIRECTIVES)] = ()
    """Further sbatch options, one per item (``--qos=normal``, ``--constraint=haswell``)."""
    lifetime_margin_seconds: DurationSeconds = 120
    """How long before the walltime ends the glidein must be gone: it is told the walltime minus
    this, so it retires, drains and exits before the batch system kills the job."""

    @field_validator("batch_system", mode="after")
    @classmethod
    def _batch_system_is_required(cls, value: str | None) -> str | None:
        """It names the blahp back end: without it no pilot can be submitted."""
        if value is None:
            raise PydanticCustomError(
                "batch_system_missing", "required for batch entries: one of slurm, pbs, lsf, sge, condor"
            )
        return value

    @property
    def queue(self) -> str | None:
        """The partition or queue the blahp is given (``partition``, else the old ``batch_queue``)."""
        return self.partition if self.partition is not None else self.batch_queue

    def batch_runtime(self, walltime_seconds: int) -> int:
        """The walltime as the blahp is told it: rounded up to whole minutes where its script
        divides by 60 (Slurm, LSF), so the batch system never kills the pilot early."""
        if self.batch_system in _ROUNDS_TO_MINUTES:
            return -(-walltime_seconds // 60) * 60
        return walltime_seconds


def batch_grid_resource(settings: BatchSettings, resource: str) -> str:
    """``batch slurm``, or ``batch slurm user@host[:port]`` when the batch system is reached over ssh."""
    return " ".join(part for part in ("batch", settings.batch_system, settings.ssh_host) if part)


def batch_problems(settings: BatchSettings, resource: str) -> list[Problem]:
    """Keys the entry's batch system cannot get through the blahp, and the old queue key beside the new."""
    return list(_batch_problems(settings))


def _batch_problems(settings: BatchSettings) -> Iterator[Problem]:
    for index, directive in enumerate(settings.directives):
        # Already refused when the config loads; again here for settings built without validation,
        # since a directive reaches a shell's echo -e and sbatch.
        try:
            _check_directive(directive)
        except PydanticCustomError as err:
            yield Problem(f"directives.{index}", err.message())
    if settings.partition is not None and settings.batch_queue is not None:
        yield Problem("batch_queue", "the old name of partition: set partition only")
    system = settings.batch_system
    if system is None:
        return
    given = {
        "nodes": settings.nodes is not None and settings.nodes > 1,
        "directives": bool(settings.directives),
        "account": settings.account is not None,
        "memory_mb_per_node": settings.memory_mb_per_node is not None,
    }
    for key, is_given in given.items():
        takers = _WHAT_BLAHP_PASSES[key]
        if is_given and system not in takers:
            yield Problem(key, f"the blahp passes it for {_listed(takers)} only, not {system}")


def _listed(systems: frozenset[BatchSystem]) -> str:
    ordered = [system for system in ("slurm", "pbs", "lsf", "sge", "condor") if system in systems]
    return ordered[0] if len(ordered) == 1 else f"{', '.join(ordered[:-1])} and {ordered[-1]}"


def batch_implies(settings: BatchSettings) -> list[Implied]:
    """The common keys a batch entry's own keys fix (see `Implied`)."""
    implied: list[Implied] = []
    if settings.walltime_seconds is not None:
        why = "the pilot's periodic_remove and the glidein's lifetime come from max_walltime_seconds"
        implied.append(Implied("max_walltime_seconds", settings.walltime_seconds, "walltime_seconds", why))
    if settings.nodes is not None:
        why = "frontends count a pilot as GLIDEIN_Nodes nodes of GLIDEIN_CPUS cores"
        implied.append(Implied("attributes.GLIDEIN_Nodes", settings.nodes, "nodes", why))
    elif settings.batch_system not in _WHAT_BLAHP_PASSES["nodes"]:
        why = f"the blahp passes no node count for {settings.batch_system}: only slurm pilots span nodes"
        implied.append(Implied("attributes.GLIDEIN_Nodes", 1, "batch_system", why, fills_in=False))
    if settings.cpus_per_node is not None:
        why = "frontends size their requests by GLIDEIN_CPUS"
        implied.append(Implied("attributes.GLIDEIN_CPUS", settings.cpus_per_node, "cpus_per_node", why))
    if settings.memory_mb_per_node is not None:
        memory = settings.memory_mb_per_node
        implied += [
            Implied("memory_mb", memory, "memory_mb_per_node", "memory_mb is what each pilot requests per node"),
            Implied(
                "attributes.GLIDEIN_MaxMemMBs",
                memory,
                "memory_mb_per_node",
                "frontends would send jobs that do not fit in the memory the batch job gets",
                at_most=True,
            ),
        ]
    return implied


def batch_lifetime_margin(settings: BatchSettings) -> LifetimeMargin:
    """The batch system kills the job at its walltime: the glidein must be gone this long before."""
    return LifetimeMargin("lifetime_margin_seconds", settings.lifetime_margin_seconds)


PLUGIN = GridTypePlugin(
    name="batch",
    settings=BatchSettings,
    template="batch.sub.j2",
    grid_resource=batch_grid_resource,
    checks=batch_problems,
    implies=batch_implies,
    lifetime_margin=batch_lifetime_margin,
)

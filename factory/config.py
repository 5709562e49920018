"""The factory's configuration: who it is, where it submits, and its entries.

An entry is one place pilots can be sent (a CE, a batch system, a cloud);
the frontend sees entries as ads in the WMS collector and asks for pilots on
them. See ``etc/factory.yaml`` for a commented example.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ModelWrapValidatorHandler,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    SkipValidation,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from updraft import protocol
from updraft.config import (
    AbsolutePath,
    AttrName,
    AttrValue,
    ClassAdExpr,
    ConfigModel,
    Count,
    DurationSeconds,
    Fraction,
    FrozenList,
    FrozenMap,
    Identity,
    IntervalSeconds,
    LifetimeSeconds,
    Loaded,
    Name,
    NonBlankStr,
    NonNegativeLifetimeSeconds,
    PositiveCount,
    Text,
    load_layered,
)
from updraft.errors import ConfigError
from updraft.factory import gridtypes
from updraft.filechecks import ReadBySchedd
from updraft.service_config import ServiceConfig
from updraft.staging import HttpUrl, StagedFileConfig, StagingSettings

SetPolicy = Literal["least_idle", "round_robin"]
"""How an entry set spreads new pilots over its members (see `updraft.factory.policy.choose_members`)."""

RESERVED_PILOT_PREFIX = "UPDRAFT_"
"""Pilot environment names the factory sets itself (the pilot's identity)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")

MAX_CLUSTER_SIZE = 10_000
"""Pilots in one submit transaction: beyond this one cluster would hold the schedd too long."""

MAX_MEMORY_MB = 16 * 1024 * 1024
"""16 TiB: more than any one worker has; larger is a typo (or bytes where MB were meant)."""

MAX_POSIX_ID = 2**32 - 2
"""uid_t and gid_t are 32 bits, and 2^32 - 1 means "no id" to chown."""

PosixId = Annotated[int, Field(ge=0, le=MAX_POSIX_ID)]

HoldReasonCode = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""An HTCondor ``HoldReasonCode`` (a 32-bit integer in the job ad)."""


def _check_grid_type(value: str) -> str:
    """A grid type some plugin provides; the error lists the ones that exist."""
    if gridtypes.is_known(value):
        return value
    raise PydanticCustomError("grid_type", gridtypes.unknown_grid_type())


GridTypeName = Annotated[str, AfterValidator(_check_grid_type)]
"""One of `updraft.factory.gridtypes.names`: ours or a third party's."""


def _check_sha256(value: str) -> str:
    if _SHA256.fullmatch(value.lower()):
        return value.lower()
    raise PydanticCustomError("sha256", "expected 64 hex digits (a SHA-256 digest)")


Sha256 = Annotated[str, AfterValidator(_check_sha256)]


class CondorTarball(ConfigModel):
    """An HTCondor release the pilot downloads, trusted by the digest written here."""

    url: HttpUrl
    sha256: Sha256


def _not_a_slot_attribute(value: str) -> str:
    """``UpdraftSlot_*`` says what the pilots' slots have: the factory derives it, a published
    attribute must not forge it (it would lose to the derived one anyway, or stand in for an unknown)."""
    if value.startswith(protocol.E_SLOT_PREFIX):
        raise PydanticCustomError(
            "slot_attribute",
            "names starting with {prefix} are reserved: the factory advertises the pilots' slot itself "
            "(from attributes.GLIDEIN_CPUS, memory_mb and the entry's slot: settings)",
            {"prefix": protocol.E_SLOT_PREFIX},
        )
    return value


SlotFreeAttrName = Annotated[AttrName, AfterValidator(_not_a_slot_attribute)]
"""A published attribute's name: a ClassAd name that is not one of the derived ``UpdraftSlot_*``."""


class GlideinSettings(ConfigModel):
    """How the glidein behaves on this entry's workers (glidein/README.md has the details).

    Each setting becomes one of glidein_startup.sh's options in the submit
    description, so the pilot gets them through the trusted channel.
    """

    max_idle_seconds: DurationSeconds = 1200
    """Leave when no job ever started for this long."""
    idle_tail_seconds: DurationSeconds = 300
    """Leave when idle this long after having run jobs."""
    failure_sleep_seconds: DurationSeconds = 600
    """On failure, keep the batch slot this long, so a broken node does not take pilot after pilot."""
    shutdown_margin_seconds: DurationSeconds = 300
    retire_spread_seconds: DurationSeconds = 0
    """Random spread of the retire times, so pilots started together do not drain together."""
    max_job_seconds: NonNegativeLifetimeSeconds = 0
    """The longest job a pilot should still start: retire this long before the die time."""
    condor_dir: AbsolutePath | None = None
    """An HTCondor installed on the workers (holding sbin/condor_master)."""
    condor_tarball: CondorTarball | None = None
    """An HTCondor release to download instead; ``condor_dir`` wins when both are set."""
    blackhole_jobs: Count = 0
    """More job starts than this within ``blackhole_window_seconds`` marks the node a black hole (0: off)."""
    blackhole_window_seconds: IntervalSeconds = 600
    node_launcher: NonBlankStr | None = None
    """For multi-node pilots (``GLIDEIN_Nodes`` > 1 in the entry's ``attributes``): how the pilot
    starts one process per node, e.g. ``srun --ntasks-per-node=1`` (the default under Slurm)."""
    node_scratch: AbsolutePath | None = None
    """For multi-node pilots: a folder on each node's own disk (``/tmp``, ``/local/scratch``) for the
    jobs' sandboxes and HTCondor's locks; unset, they stay in the work dir on the shared filesystem."""
    slots_layout: Literal["partitionable", "fixed"] = "partitionable"
    start: ClassAdExpr | None = None
    """The entry's START expression, combined with the frontend group's."""


_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
_SLOT_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_domain(value: str) -> str:
    if _DOMAIN.fullmatch(value):
        return value
    raise PydanticCustomError(
        "slot_domain",
        "expected a domain name (letters, digits, '.', '_' or '-', starting with a letter or digit, "
        "at most 253 characters), e.g. site.example.org",
    )


def _check_slot_word(value: str) -> str:
    if _SLOT_WORD.fullmatch(value):
        return value
    raise PydanticCustomError(
        "slot_word",
        "expected one word as HTCondor writes it (letters, digits, '.', '_' or '-', at most 64 characters), "
        "e.g. X86_64, LINUX, AlmaLinux9",
    )


SlotDomain = Annotated[str, AfterValidator(_check_domain)]
SlotWord = Annotated[str, AfterValidator(_check_slot_word)]


class SlotSettings(ConfigModel):
    """What the slots of this entry's pilots have that the factory cannot derive, for the entry ad.

    Frontends evaluate a job's own Requirements against the slot an entry's
    pilot will bring (``UpdraftSlot_*`` in the entry ad, docs/protocol.md).
    Cpus and Memory come from ``attributes``/``memory_mb``; these are the
    rest. Each one unset is simply not advertised (unknown to frontends,
    never a refusal), except the two domains, which the glidein always sets.
    """

    disk_mb: Annotated[int, Field(ge=1, le=MAX_MEMORY_MB * 1024)] | None = None
    """Scratch disk each pilot node gives its jobs, in MB (advertised as ``Disk`` in KiB)."""
    arch: SlotWord | None = None
    """``Arch`` of the workers, as HTCondor names it: ``X86_64``, ``aarch64``, ``ppc64le``."""
    opsys: SlotWord | None = None
    """``OpSys``: ``LINUX``."""
    opsys_and_ver: SlotWord | None = None
    """``OpSysAndVer``: ``AlmaLinux9``, ``Ubuntu22``."""
    opsys_major_ver: Annotated[int, Field(ge=0, le=10_000)] | None = None
    """``OpSysMajorVer``: ``9``."""
    filesystem_domain: SlotDomain | None = None
    """The pilots' ``FILESYSTEM_DOMAIN``. Unset: ``<entry>.<factory>.updraft.invalid``, which no
    submit host has, so jobs that need their submit host's files (``should_transfer_files = NO``)
    never match a pilot. Set it only for a site whose workers really mount the VO's submit
    hosts' filesystem, to the submit hosts' FILESYSTEM_DOMAIN."""
    uid_domain: SlotDomain | None = None
    """The pilots' ``UID_DOMAIN``. Unset: ``<entry>.<factory>.updraft.invalid`` too (whatever
    ``filesystem_domain`` says), so jobs run as the pilot's user."""


class FrontendLimits(ConfigModel):
    """Caps on one frontend's pilots on one entry.

    They share the entry's room between frontends, so one frontend with a
    burst of jobs cannot take every place the entry has. Unset (null) under
    a frontend means the entry's ``limits.per_frontend`` value; unset there
    means no cap. 0 is a real zero, as everywhere in this file (see
    `updraft.factory.policy`).
    """

    max_pilots: Count | None = None
    max_idle: Count | None = None
    max_held: Count | None = None
    """Held pilots of this frontend at which its submissions stop (0: none submitted at all)."""


class EntryLimits(ConfigModel):
    """Caps on one entry's pilots; the factory stops submitting when one is reached.

    0 is a real zero, never "no limit": ``max_idle: 0`` submits nothing, and
    since submission stops once the held count reaches ``max_held``,
    ``max_held: 0`` submits nothing either.
    """

    max_pilots: Count = 100
    max_idle: Count = 20
    max_held: Count = 10
    per_frontend: FrontendLimits = Field(default_factory=FrontendLimits)
    """Caps for every allowed frontend that has no ``limits`` of its own under ``frontends:``."""


class AllowedFrontend(ConfigModel):
    """A frontend the entry accepts requests from, and how it must prove it is that frontend."""

    identity: Identity
    """The AuthenticatedIdentity the collector must attach to its request ads: a name written
    in the ad proves nothing, anyone can write one."""
    security_classes: Annotated[FrozenList[Name], Field(min_length=1)] = ("default",)
    """The security classes its requests may name. At least one: an empty list would accept the
    frontend and then refuse every request it sends, which is better said by leaving it out."""
    limits: FrontendLimits = Field(default_factory=FrontendLimits)
    """Each cap not set here is the entry's ``limits.per_frontend`` one (where that is unset too: no cap)."""
    require_credential: bool = True
    """Refuse its requests unless they carry a sealed credential (the pilot token) that opens,
    with the authenticated identity sealed inside. Off only for pools where pilots need no token."""


class SubmitTuning(ConfigModel):
    """How much the factory does to one entry in one cycle, so one bad cycle cannot flood a CE.

    0 is a real zero: ``max_submits_per_cycle: 0`` stops new pilots while
    removals and releases still run.
    """

    max_submits_per_cycle: Count = 20
    max_removals_per_cycle: Count = 20
    max_releases_per_cycle: Count = 10
    cluster_size: Annotated[int, Field(ge=1, le=MAX_CLUSTER_SIZE)] = 5
    """Pilots per submitted cluster: one submit transaction, one batch for the grid manager."""


class StaleSettings(ConfigModel):
    """Seconds in one state after which a pilot is taken as stuck and removed; null: never.

    Idle pilots are checked by default because a CE that accepts pilots and
    never starts them would otherwise hold the entry's idle places forever.
    A running pilot ends on its own (``max_walltime_seconds``), so that age
    is off by default.
    """

    idle_seconds: LifetimeSeconds | None = 86400
    running_seconds: LifetimeSeconds | None = None
    held_seconds: LifetimeSeconds | None = None


class HoldSettings(ConfigModel):
    """Which held pilots are released, how often, and how long the factory waits first.

    ``recoverable_codes`` are HTCondor ``HoldReasonCode`` values (the table
    "Hold Reason Codes" in the HTCondor manual):

    - 0 ``Unspecified``: the grid manager holds a grid job with code 0 for
      most failures it reports (CE unreachable, submission refused, the
      remote job lost), which are usually transient;
    - 12 ``TransferOutputError`` and 13 ``TransferInputError``: moving the
      pilot's files failed, typically a network or a full disk.

    Everything else (e.g. 1 ``UserRequest``, 3 ``JobPolicy`` from the pilot's
    own ``periodic_hold``, 4 ``CorruptedCredential``) recurs when released, so
    such a pilot is removed instead. An ec2 entry may add 40
    (``EC2ConnectionProblem``) and 41 (``EC2ServerError``).

    The wait before a release doubles with every release of that pilot, from
    ``backoff_seconds`` up to ``max_backoff_seconds``.
    """

    recoverable_codes: FrozenList[HoldReasonCode] = (0, 12, 13)
    max_releases: Count = 3
    """Releases per pilot; a pilot held again after that many is removed (0: never released)."""
    backoff_seconds: IntervalSeconds = 300
    max_backoff_seconds: IntervalSeconds = 3600

    @field_validator("max_backoff_seconds", mode="after")
    @classmethod
    def _not_below_the_first_wait(cls, value: int, info: ValidationInfo) -> int:
        """A ceiling under the first wait would silently shorten it: say so instead."""
        first = info.data.get("backoff_seconds")
        if first is not None and value < first:
            raise PydanticCustomError("backoff_order", "must be at least backoff_seconds ({first})", {"first": first})
        return value


HealthCause = Literal[
    "submit_failed",
    "held_batch_refused",
    "held_batch_unreachable",
    "held_other",
    "validation",
    "black_hole",
    "pilot_failed",
    "no_job",
    "slow_start",
]
"""Why a pilot counts as failed for the health policy (`updraft.factory.health.CAUSES`)."""

ShareOrZero = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]


class HealthConfig(ConfigModel):
    """The entry health policy (docs/entry-health.md): at factory level the defaults of every entry,
    under an entry or entry set only the keys that differ. Unset keys are inherited: the entry's,
    else the factory's, else the built-in default (`updraft.factory.health.HealthSettings`)."""

    enabled: bool | None = None
    """false: the entry stays active whatever its pilots do (operators' overrides still apply)."""
    window_seconds: IntervalSeconds | None = None
    """How far back the failure fraction looks."""
    min_outcomes: PositiveCount | None = None
    """With fewer outcomes in the window, the missing ones count as good."""
    degrade_fraction: Fraction | None = None
    ban_fraction: Fraction | None = None
    recover_fraction: ShareOrZero | None = None
    min_time_in_state_seconds: DurationSeconds | None = None
    ban_seconds: IntervalSeconds | None = None
    probe_count: Annotated[int, Field(ge=1, le=1000)] | None = None
    degraded_max_idle: Count | None = None
    start_seconds: IntervalSeconds | None = None
    """A pilot still idle this long after submission is a slow start (a failure)."""
    healthy_after_seconds: IntervalSeconds | None = None
    """A pilot running this long is a good outcome."""
    history_seconds: IntervalSeconds | None = None
    """How long outcomes are kept (at least the window)."""
    ignore_causes: FrozenList[HealthCause] | None = None
    """Failure causes not counted on this entry, e.g. [slow_start] where the batch queue is routinely long."""


HEALTH_KEYS = tuple(HealthConfig.model_fields)


class Entry(ConfigModel):
    """One place pilots are submitted to, and what its entry ad advertises.

    ``resource`` is what the entry's grid type makes its HTCondor
    ``grid_resource`` from: for most, the rest of it after the grid type
    (see `updraft.factory.gridtypes`). The keys below are every entry's;
    any other key belongs to the grid type (``batch_system``, ``cloud``...),
    is validated by its plugin's settings model and kept in `grid`.
    """

    enabled: bool = True
    downtime: bool = False
    """Advertised as in downtime: frontends request nothing here, running pilots are left alone."""
    grid_type: GridTypeName
    resource: NonBlankStr
    attributes: FrozenMap[SlotFreeAttrName, AttrValue] = Field(default_factory=dict)
    limits: EntryLimits = Field(default_factory=EntryLimits)
    max_walltime_seconds: LifetimeSeconds = 86400
    """A pilot running longer than this is removed by its own ``periodic_remove``."""
    memory_mb: Annotated[int, Field(ge=1, le=MAX_MEMORY_MB)] | None = None
    """Memory each pilot requests; unset leaves it to the site."""
    pilot_attributes: FrozenMap[AttrName, AttrValue] = Field(default_factory=dict)
    """Passed to the pilot itself (its environment, or the VM's user data / metadata)."""
    frontends: FrozenMap[Name, AllowedFrontend] = Field(default_factory=dict)
    """Frontends allowed on this entry, by name; requests from any other are refused."""
    submit: SubmitTuning = Field(default_factory=SubmitTuning)
    stale: StaleSettings = Field(default_factory=StaleSettings)
    holds: HoldSettings = Field(default_factory=HoldSettings)
    glidein: GlideinSettings = Field(default_factory=GlideinSettings)
    slot: SlotSettings = Field(default_factory=SlotSettings)
    """What the pilots' slots have beyond cores and memory (disk, platform, domains), for the entry ad."""
    staging_files: FrozenList[StagedFileConfig] = ()
    """This entry's files (e.g. its validation scripts), after the factory's ``staging.files``."""
    health: HealthConfig = Field(default_factory=HealthConfig)
    """This entry's health policy keys that differ from the factory's ``health:``."""
    grid: Annotated[ConfigModel, SkipValidation, Field(exclude=True)]
    """The grid type's own keys, as its plugin's settings model validated them. Not a key of
    the YAML: the grid type's keys sit beside the common ones there (see `_split_by_owner`)."""

    @model_validator(mode="wrap")
    @classmethod
    def _split_by_owner(cls, data: object, handler: ModelWrapValidatorHandler[Entry]) -> Entry:
        """Common keys are validated here, every other key by the grid type's plugin.

        The YAML stays flat while each grid type owns its keys. Problems of
        both kinds are reported together, each at its own key (e.g.
        ``entries.x.batch_system``), so the loader names file and key.
        """
        if not isinstance(data, Mapping):
            return handler(data)  # an Entry already, or a type error the handler words
        common_keys = [key for key in cls.model_fields if key != "grid"]
        common = {key: value for key, value in data.items() if key in common_keys}
        own = {key: value for key, value in data.items() if key not in common_keys}
        settings, problems = _grid_settings(data.get("grid_type"), own, common_keys)
        if not problems:
            common, implied_problems = _with_implied(data.get("grid_type"), settings, common)
            problems = [*_grid_check_problems(data, settings), *implied_problems]
        try:
            entry = handler({**common, "grid": settings})
        except ValidationError as err:
            raise _invalid(cls.__name__, [*map(_restated, err.errors(include_url=False)), *problems]) from None
        problems = problems or _line_break_problems(entry) or _lifetime_problems(entry)
        if problems:
            raise _invalid(cls.__name__, problems)
        return entry

    @model_serializer(mode="wrap")
    def _grid_keys_beside_the_common_ones(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        """Dumped the way it is written, so a dump validates again."""
        common: dict[str, Any] = handler(self)
        own = self.grid.model_dump(
            mode=info.mode,
            exclude_none=info.exclude_none,
            exclude_defaults=info.exclude_defaults,
            exclude_unset=info.exclude_unset,
        )
        return {**common, **own}

    @field_validator("pilot_attributes", mode="after")
    @classmethod
    def _no_reserved_pilot_names(cls, value: Mapping[str, object]) -> Mapping[str, object]:
        """The factory sets UPDRAFT_* itself; a configured one would forge the pilot's identity."""
        reserved = sorted(name for name in value if name.upper().startswith(RESERVED_PILOT_PREFIX))
        if reserved:
            raise PydanticCustomError(
                "reserved_name",
                "{names}: names starting with {prefix} are reserved for the pilot identity",
                {"names": ", ".join(reserved), "prefix": RESERVED_PILOT_PREFIX},
            )
        return value

    @property
    def grid_plugin(self) -> gridtypes.GridTypePlugin:
        """The plugin of this entry's grid type (its template, checks and ``grid_resource``)."""
        return gridtypes.plugin(self.grid_type)

    @property
    def grid_resource(self) -> str:
        """The HTCondor ``grid_resource`` submit value, e.g. ``condor ce@site1.lab host:port``.

        Batch: ``batch slurm``, or ``batch slurm user@host`` when the batch
        system is reached over ssh.
        """
        return self.grid_plugin.grid_resource_for(self.grid, self.resource)

    def setting(self, key: str) -> object:
        """One of the grid type's keys; None where this entry's grid type has no such key."""
        return getattr(self.grid, key, None)

    # Readings of our own grid types' keys, for callers that ask any entry (None elsewhere).
    # A grid type's own code reads its settings from `grid` instead.

    @property
    def batch_system(self) -> object:
        return self.setting("batch_system")

    @property
    def ssh_host(self) -> object:
        return self.setting("ssh_host")

    @property
    def batch_queue(self) -> object:
        return self.setting("batch_queue")

    @property
    def cloud(self) -> object:
        return self.setting("cloud")

    @property
    def cpus_per_pilot(self) -> int:
        """GLIDEIN_CPUS when it is a positive integer; anything else (e.g. "auto") means 1."""
        return cpus_in(self.attributes)

    @property
    def pilot_walltime_seconds(self) -> int:
        """The walltime the glidein is told: ``max_walltime_seconds`` less the grid type's margin
        (a batch entry's ``lifetime_margin_seconds``), so the pilot is gone before the site's limit."""
        margin = self.grid_plugin.margin(self.grid)
        return self.max_walltime_seconds - (margin.seconds if margin is not None else 0)


_MISSING = object()


def _with_implied(
    grid_type: object, settings: ConfigModel, common: dict[str, Any]
) -> tuple[dict[str, Any], list[InitErrorDetails]]:
    """The common keys with what the grid type's own keys fix filled in, or where they disagree.

    A batch entry's ``cpus_per_node: 8`` is ``attributes.GLIDEIN_CPUS: 8``: the
    entry ad, the pilot's environment and the frontends read the common key, so
    it gets the value where it is unset, and an entry that sets both differently
    is refused at the grid type's key, naming both (see `gridtypes.plugin.Implied`).
    """
    if not isinstance(grid_type, str) or not gridtypes.is_known(grid_type):
        return common, []
    filled = dict(common)
    problems: list[InitErrorDetails] = []
    for implied in gridtypes.plugin(grid_type).implied(settings):
        path = implied.key.split(".")
        parent: object = filled if len(path) == 1 else filled.get(path[0], {})
        if not isinstance(parent, Mapping):
            continue  # not a mapping: the common key's own validation says so
        current = parent.get(path[-1], _MISSING)
        if current is _MISSING:
            if implied.fills_in:
                filled = _set_at(filled, path, implied.value)
        elif not _agrees(current, implied):
            problems.append(_disagreement(implied, current))
    return filled, problems


def _set_at(data: dict[str, Any], path: Sequence[str], value: object) -> dict[str, Any]:
    """`data` with `value` at `path` (one or two keys deep), the caller's mappings left untouched."""
    if len(path) == 1:
        return {**data, path[0]: value}
    return {**data, path[0]: {**data.get(path[0], {}), path[1]: value}}


def _agrees(current: object, implied: gridtypes.Implied) -> bool:
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        return False
    return current <= implied.value if implied.at_most else current == implied.value


def _disagreement(implied: gridtypes.Implied, current: object) -> InitErrorDetails:
    relation = "more than" if implied.at_most else "not"
    return _problem(
        (implied.source,),
        implied.value,
        "grid_type_implies",
        "{value} here, but {key} is {current}, {relation} {value}: {why}; set one of the two, or both alike",
        {
            "value": implied.value,
            "key": implied.key,
            "current": repr(current),
            "relation": relation,
            "why": implied.why,
        },
    )


def _lifetime_problems(entry: Entry) -> list[InitErrorDetails]:
    """A walltime that leaves the glidein no time to run: after the grid type's margin, or after the
    glidein's own ``shutdown_margin_seconds`` (its lifetime step would fail on the worker)."""
    margin = entry.grid_plugin.margin(entry.grid)
    walltime = entry.max_walltime_seconds
    if margin is not None and margin.seconds >= walltime:
        return [
            _problem(
                (margin.key,),
                margin.seconds,
                "lifetime_margin",
                "must be less than the walltime, max_walltime_seconds ({walltime}): the pilot would get no time",
                {"walltime": walltime},
            )
        ]
    shutdown = entry.glidein.shutdown_margin_seconds
    if entry.pilot_walltime_seconds <= shutdown:
        less = f" less {margin.key} ({margin.seconds})" if margin is not None and margin.seconds else ""
        return [
            _problem(
                ("glidein", "shutdown_margin_seconds"),
                shutdown,
                "lifetime_margin",
                "must be less than the glidein's walltime, {left} s (max_walltime_seconds {walltime}{less}): "
                "the glidein would stop before it starts",
                {"left": entry.pilot_walltime_seconds, "walltime": walltime, "less": less},
            )
        ]
    return []


def _grid_check_problems(data: Mapping[str, Any], settings: ConfigModel) -> list[InitErrorDetails]:
    """The grid type's checks (an ec2 entry without ``cloud``, a gce ``resource`` of two words),
    each at its key, run when the config is loaded.

    So ``check-config`` lists every one with its file and key, beside the entry's other
    problems, instead of the factory finding the first one when it submits. They need
    the grid type's settings validated and a ``resource`` (its own problems are said
    elsewhere), nothing else of the entry.
    """
    grid_type, resource = data.get("grid_type"), data.get("resource")
    if not isinstance(grid_type, str) or not gridtypes.is_known(grid_type):
        return []
    if not isinstance(resource, str) or not resource.strip():
        return []
    return [
        _problem(_key_path(problem.key), _value_at(data, problem.key), "grid_type_check", _literal(problem.message))
        for problem in gridtypes.plugin(grid_type).problems(settings, resource)
    ]


def _line_break_problems(entry: Entry) -> list[InitErrorDetails]:
    """Every text value of a valid entry that would end a submit command, at its key."""
    return [
        _problem(path, value, "line_break", LINE_BREAK_PROBLEM)
        for path, value in line_breaks((), entry.model_dump(exclude={"attributes"}))
    ]


def _literal(message: str) -> str:
    """`message` as a PydanticCustomError template that formats to itself."""
    return message.replace("{", "{{").replace("}", "}}")


LINE_BREAK_PROBLEM = "contains a line break, which would end the submit command and start another"

SUBMIT_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00")
"""Everything `str.splitlines` breaks at, and NUL: the submit parser may end a line at any of them."""


def line_breaks(where: tuple[str | int, ...], value: object) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """The path and text of every string (at any depth) that holds a line break."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from line_breaks((*where, key), item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from line_breaks((*where, index), item)
    elif isinstance(value, (str, PurePath)) and not SUBMIT_LINE_BREAKS.isdisjoint(str(value)):
        yield where, str(value)


def _key_path(key: str) -> tuple[str | int, ...]:
    """A grid type check's key (``cloud`` or ``cloud.instance_type``) as a path inside the entry."""
    return tuple(key.split("."))


def _value_at(data: Mapping[str, Any], key: str) -> object:
    """The value a grid type check is about, for the message's ``(got ...)``."""
    value: object = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _grid_settings(
    grid_type: object, own: Mapping[str, object], common_keys: Sequence[str]
) -> tuple[ConfigModel, list[InitErrorDetails]]:
    """The grid type's keys validated by its plugin, or the problems with them.

    An unknown (or missing) grid type is the ``grid_type`` key's problem
    alone: without one, nothing can be said about the other keys.
    """
    if not isinstance(grid_type, str) or not gridtypes.is_known(grid_type):
        return gridtypes.NoSettings(), []
    try:
        found = gridtypes.plugin(grid_type)
    except ConfigError as err:
        return gridtypes.NoSettings(), [_problem(("grid_type",), grid_type, "grid_type", str(err))]
    try:
        return found.settings.model_validate(own), []
    except ValidationError as err:
        problems = [_grid_key_problem(error, found, common_keys) for error in err.errors(include_url=False)]
        return gridtypes.NoSettings(), problems


def _grid_key_problem(
    error: ErrorDetails, found: gridtypes.GridTypePlugin, common_keys: Sequence[str]
) -> InitErrorDetails:
    """A plugin's validation error; a key it does not know says whose key it is, or which keys exist."""
    loc = tuple(error["loc"])
    if error["type"] != "extra_forbidden":
        return _restated(error)
    owners = gridtypes.owners_of(loc, besides=found.name)
    context = {"types": " and ".join(owners), "grid_type": found.name, "key": str(loc[-1])}
    if owners and len(loc) == 1:
        return _problem(loc, error["input"], "grid_type_setting", "only for {types} entries, not {grid_type}", context)
    if owners:
        return _problem(
            loc,
            error["input"],
            "grid_type_setting",
            "{key} not used by {grid_type} entries (only by {types} entries)",
            context,
        )
    allowed = (
        [*common_keys, *found.settings.model_fields]
        if len(loc) == 1
        else list(gridtypes.settings_keys(found.settings, loc[:-1]))
    )
    return _problem(loc, error["input"], "extra_forbidden", "unknown key", {"allowed": ", ".join(allowed)})


def _restated(error: ErrorDetails) -> InitErrorDetails:
    """A validation error as it was, to be raised again together with others."""
    return _problem(tuple(error["loc"]), error["input"], error["type"], error["msg"])


def _invalid(title: str, problems: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data(title, problems)


def shipped_glidein() -> Path:
    """glidein_startup.sh as installed with Updraft, checked against the assembly of its parts."""
    from updraft.glidein.assemble import shipped_script

    return shipped_script()


class PilotSettings(ConfigModel):
    """The pilot program every entry starts and extra arguments for it.

    The default is the glidein installed with Updraft. A factory whose
    schedd cannot read that path (another host, a chroot) names a copy.
    """

    executable: ReadBySchedd = Field(default_factory=shipped_glidein)
    arguments: Text = ""
    """Added after the options the factory writes (shell-like quoting)."""


class EntrySet(ConfigModel):
    """Several entries (CEs) advertised as ONE entry, the set's name (a "metasite").

    Frontends see and request only the set; the factory spreads the pilots
    over the members by `policy`. Members are not advertised on their own,
    and the set's ``limits`` and ``frontends`` replace theirs. The set's
    ``downtime: true`` takes every member down (a member that says
    ``downtime: false`` itself is an error); a member's ``downtime: true``
    takes only that member out of the set's rotation;
    how pilots are submitted (``submit``, ``stale``, ``holds``) comes from
    the first member (see `updraft.factory.policy`). ``GLIDEIN_CPUS`` among the
    set's ``attributes`` must be what every member's pilots have, since
    frontends size their requests by it.
    """

    members: Annotated[FrozenList[Name], Field(min_length=1)]
    """Names of entries under ``entries:``, each in at most one set."""
    policy: SetPolicy = "least_idle"
    attributes: FrozenMap[SlotFreeAttrName, AttrValue] = Field(default_factory=dict)
    limits: EntryLimits = Field(default_factory=EntryLimits)
    frontends: FrozenMap[Name, AllowedFrontend] = Field(default_factory=dict)
    downtime: bool = False
    enabled: bool = True
    """false: the set is not advertised, and its members are not used either."""
    health: HealthConfig = Field(default_factory=HealthConfig)
    """The set's health policy keys that differ from the factory's (the set has one state as a whole)."""

    @property
    def cpus_per_pilot(self) -> int:
        """As `Entry.cpus_per_pilot`: what the set's ad tells frontends a pilot brings."""
        return cpus_in(self.attributes)


def cpus_in(attributes: Mapping[str, object]) -> int:
    """GLIDEIN_CPUS when it is a positive integer; anything else (e.g. "auto") means 1."""
    return _positive_int(attributes.get(protocol.E_CPUS, 1))


def nodes_in(attributes: Mapping[str, object]) -> int:
    """GLIDEIN_Nodes (nodes per pilot) when it is a positive integer; else 1."""
    return _positive_int(attributes.get(protocol.E_NODES, 1))


def _positive_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


class CredentialSettings(ConfigModel):
    """The factory's key pair for sealed credentials, and where the credentials it opens are kept."""

    key_rotation_seconds: LifetimeSeconds = 7 * 86400
    """A new key pair after this long; the old one still opens requests for ``key_grace_seconds``."""
    key_grace_seconds: IntervalSeconds = 3600
    """Long enough for every frontend to see the new key (a few of their cycles)."""
    store_dir: AbsolutePath | None = None
    """One folder per frontend of its pilot tokens (0700, files 0600); unset: ``work_dir/credentials``.
    (The key pair is kept apart, in ``work_dir/keyring``.)"""
    owner_uid: PosixId | None = None
    """A factory running as root submits as another identity: its pilot tokens are handed to this
    uid, so the schedd can read them for that identity's pilots. Unset: files stay the factory's."""
    owner_gid: PosixId | None = None


class FactoryConfig(ServiceConfig):
    """The whole factory configuration, after merging ``factory.yaml`` and ``factory.d/``."""

    schedd: NonBlankStr
    work_dir: AbsolutePath = Path("/var/lib/updraft/factory")
    entries: FrozenMap[Name, Entry] = Field(default_factory=dict)
    pilot: PilotSettings = Field(default_factory=PilotSettings)
    entry_sets: FrozenMap[Name, EntrySet] = Field(default_factory=dict)
    """Entry sets by the name they are advertised under (see `EntrySet`)."""
    pilot_log_retention_seconds: LifetimeSeconds = 7 * 86400
    """Pilot output and error files older than this are deleted (their reports are read long before)."""
    credentials: CredentialSettings = Field(default_factory=CredentialSettings)
    staging: StagingSettings | None = None
    """The factory's staging area (per entry releases, written by ``reconfig``); unset: the pilot
    gets no manifest, which only a custom ``pilot.executable`` can live with."""
    health: HealthConfig = Field(default_factory=HealthConfig)
    """The entry health policy of every entry (docs/entry-health.md); entries may change keys of it."""
    health_save_seconds: IntervalSeconds = 300
    """How often the running factory writes the entry health outcomes (``health-history.json``; the
    states are written every cycle): what a crash may lose, against half a second per write at 5,000
    entries with a day of outcomes."""

    @model_validator(mode="after")
    def _entry_sets_fit_the_entries(self) -> FactoryConfig:
        """Members must exist, belong to one set only, and agree with the set's core count and downtime.

        Every problem is reported at its own key path (e.g.
        ``entry_sets.us.members[1]``), so the loader names the file and key
        the operator has to edit, and all are reported at once.
        """
        problems = [
            *_set_name_clashes(self),
            *_member_problems(self),
            *_downtime_conflicts(self),
            *_health_problems(self),
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


def _problem(
    loc: tuple[str | int, ...], value: object, kind: str, message: str, context: Mapping[str, object] | None = None
) -> InitErrorDetails:
    """One validation error at `loc`: a ValidationError raised in a validator keeps these paths."""
    return InitErrorDetails(type=PydanticCustomError(kind, message, dict(context or {})), loc=loc, input=value)


def _set_name_clashes(config: FactoryConfig) -> list[InitErrorDetails]:
    """Sets and entries are both advertised by name, so one name cannot mean both."""
    return [
        _problem(
            ("entry_sets", name),
            name,
            "entry_set_name",
            "{name} is also the name of an entry: entries and entry sets are advertised under one namespace",
            {"name": repr(name)},
        )
        for name in config.entry_sets
        if name in config.entries
    ]


def _member_problems(config: FactoryConfig) -> list[InitErrorDetails]:
    """Unknown members, members of two sets (or listed twice), and core counts that differ."""
    problems: list[InitErrorDetails] = []
    owner: dict[str, tuple[str, int]] = {}
    for set_name in sorted(config.entry_sets):
        entry_set = config.entry_sets[set_name]
        for index, member in enumerate(entry_set.members):
            loc = ("entry_sets", set_name, "members", index)
            entry = config.entries.get(member)
            if entry is None:
                problems.append(
                    _problem(loc, member, "entry_set_member", "no entry named {name}", {"name": repr(member)})
                )
                continue
            if member in owner:
                problems.append(
                    _problem(loc, member, "entry_set_member", _already_in(member, *owner[member], set_name))
                )
                continue
            owner[member] = (set_name, index)
            if entry.cpus_per_pilot != entry_set.cpus_per_pilot:
                problems.append(
                    _problem(
                        loc,
                        member,
                        "entry_set_cpus",
                        "entry {name} has {member_cpus}-core pilots but the set advertises {set_cpus} "
                        "(GLIDEIN_CPUS): frontends would size their requests wrong",
                        {
                            "name": repr(member),
                            "member_cpus": entry.cpus_per_pilot,
                            "set_cpus": entry_set.cpus_per_pilot,
                        },
                    )
                )
    return problems


def _downtime_conflicts(config: FactoryConfig) -> list[InitErrorDetails]:
    """A set in downtime takes every member out of use, so a member that says ``downtime: false``
    itself would be overridden without a word: that is refused, naming both keys.

    The other way round is no conflict: a member's ``downtime: true`` in a set that is up takes
    that one CE out of the set's rotation (`updraft.factory.policy.available_members`).
    """
    return [
        _problem(
            ("entries", member, "downtime"),
            False,
            "entry_set_downtime",
            "says the entry is up, but entry_sets.{set_name}.downtime is true and takes every member "
            "down: remove one of the two",
            {"set_name": set_name},
        )
        for set_name, entry_set in sorted(config.entry_sets.items())
        if entry_set.downtime
        for member in entry_set.members
        if member in config.entries
        and "downtime" in config.entries[member].model_fields_set
        and not config.entries[member].downtime
    ]


def health_values(factory: HealthConfig, own: HealthConfig) -> dict[str, Any]:
    """The keys set for one entry: its own, else the factory's; unset ones are left out (built-in)."""
    values = {}
    for key in HEALTH_KEYS:
        value = getattr(own, key)
        if value is None:
            value = getattr(factory, key)
        if value is not None:
            values[key] = value
    return values


_HEALTH_ORDER = (
    ("recover_fraction", "degrade_fraction", "below", operator.lt),
    ("degrade_fraction", "ban_fraction", "at most", operator.le),
    ("window_seconds", "history_seconds", "at most", operator.le),
)
_HEALTH_BUILT_IN = {"recover_fraction": 0.2, "degrade_fraction": 0.5, "ban_fraction": 0.8}
_HEALTH_BUILT_IN |= {"window_seconds": 3600, "history_seconds": 86400}
"""The built-in values the order checks fall back on (the same as `updraft.factory.health.HealthSettings`)."""


def _health_order_problems(where: tuple[str | int, ...], values: Mapping[str, Any]) -> list[InitErrorDetails]:
    """recover < degrade <= ban, and window <= history: anything else makes a state unreachable or
    a window that looks at outcomes already forgotten."""
    problems = []
    for low, high, words, holds in _HEALTH_ORDER:
        low_value = values.get(low, _HEALTH_BUILT_IN[low])
        high_value = values.get(high, _HEALTH_BUILT_IN[high])
        if not holds(low_value, high_value):
            key = low if low in values else high
            problems.append(
                _problem(
                    (*where, "health", key),
                    values.get(key),
                    "health_order",
                    "{low} ({low_value}) must be {words} {high} ({high_value})",
                    {"low": low, "low_value": low_value, "words": words, "high": high, "high_value": high_value},
                )
            )
    return problems


def _health_problems(config: FactoryConfig) -> list[InitErrorDetails]:
    """The health keys in force for the factory and each entry and set, checked in order; a problem is
    reported at the key of whoever set it (the entry's own, else the factory's)."""
    problems = _health_order_problems((), health_values(config.health, HealthConfig()))
    if problems:
        return problems
    owners: list[tuple[tuple[str | int, ...], HealthConfig]] = [
        *((("entries", name), entry.health) for name, entry in sorted(config.entries.items())),
        *((("entry_sets", name), entry_set.health) for name, entry_set in sorted(config.entry_sets.items())),
    ]
    for where, own in owners:
        problems += _health_order_problems(where, health_values(config.health, own))
    return problems


def _already_in(member: str, first_set: str, first_index: int, this_set: str) -> str:
    if first_set == this_set:
        return f"entry {member!r} is listed twice (also members[{first_index}])"
    return f"entry {member!r} is already a member of entry set {first_set!r}: an entry is in at most one set"


def load_factory_config(path: Path | str, *, on_warning: Callable[[str], None] | None = None) -> Loaded[FactoryConfig]:
    """Read and validate the factory config at `path` plus its ``.d/`` drop-ins.

    Warnings go to `on_warning`, or to the ``updraft.config`` log if it is None.
    """
    return load_layered(path, FactoryConfig, on_warning=on_warning)

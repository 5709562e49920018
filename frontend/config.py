"""The frontend's configuration: its VO pool, the factories it trusts, its groups.

A group is a slice of the VO's jobs (``job_constraint``) with its own rule
for which factory entries suit them (``match_expr``) and its own pilot
limits. See ``etc/frontend.yaml`` for a commented example.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from updraft.config import (
    AbsolutePath,
    AttrName,
    ClassAdExpr,
    ConfigModel,
    Count,
    DurationSeconds,
    Fraction,
    FrozenList,
    FrozenMap,
    HostPort,
    Identity,
    IntervalSeconds,
    LifetimeSeconds,
    Loaded,
    Name,
    NonBlankStr,
    NonNegativeLifetimeSeconds,
    PositiveCount,
    load_layered,
)
from updraft.filechecks import ReadHere
from updraft.monitoring.config import MonitoringConfig
from updraft.service_config import ServiceConfig
from updraft.staging import StagedFileConfig, StagingSettings

MAX_ATTENUATION = 100.0
"""Asking for less than 1% of the missing pilots per cycle would never catch up with demand."""

MAX_HOLD_SECONDS = 86400
"""A day: no request computed from data older than that is worth keeping."""


class FactoryRef(ConfigModel):
    """A factory the frontend works with; its ads count only if they come from `identity`."""

    identity: Identity
    security_class: Name = "default"
    """Sent with every request to this factory; its entries list the classes they accept."""


class GroupLimits(ConfigModel):
    """Caps on the pilots one group asks for: per entry, and across all its entries."""

    max_idle_pilots: Count = 50
    max_running_pilots: Count = 500
    max_idle_per_entry: Count = 20
    max_running_per_entry: Count = 100


class Limits(ConfigModel):
    """Caps on idle (queued) and running pilots at one level (frontend or whole pool)."""

    max_idle_pilots: Count = 1000
    max_running_pilots: Count = 10000


class MatchIndex(ConfigModel):
    """Prunes matching: a job is compared only with entries whose `entry_attr` is
    listed in its `job_attr` (a comma-separated list, e.g. DESIRED_Sites)."""

    job_attr: AttrName
    entry_attr: AttrName


class Removal(ConfigModel):
    """When pilots nobody needs are removed; running ones only if asked for here."""

    mode: Literal["none", "idle", "all"] = "idle"
    max_fraction_per_cycle: Fraction = 0.1


class IdleFeedback(ConfigModel):
    """When an entry's idle pilots keep refusing a shape of the group's jobs, stop counting it there.

    Evidence, once per cycle for each (shape, entry): the entry has an idle
    slot of this group that fits the shape (cores, memory, at least
    ``min_pilot_lifetime_seconds`` to live) while the shape's idle jobs
    are placed on it. After ``cycles`` consecutive cycles of evidence
    spanning at least ``min_seconds``, the shape no longer counts as demand
    on that entry, from the next cycle on, until ``hold_seconds`` after the
    last evidence; then it is tried again.

    The defaults: a pilot that has just joined is idle until the next
    negotiation cycle (NEGOTIATOR_INTERVAL, 60 s by default) and a claim
    takes a few seconds more, so one or two cycles of idle pilots next to
    idle jobs are normal. Five minutes (``min_seconds``, about five
    negotiation cycles, seen in at least 3 frontend cycles) of the same is
    a refusal: a START expression, a site policy, a requirement no ad
    showed. An hour's hold (``hold_seconds``) bounds what a wrong guess
    costs: the pair is asked again within the hour after its pilots are
    gone, and one refusing pair wastes at most a few idle pilots an hour,
    not one every cycle. A pool whose negotiator cycles faster (the lab's)
    may use shorter times.
    """

    enabled: bool = True
    cycles: PositiveCount = 3
    min_seconds: DurationSeconds = 300
    hold_seconds: DurationSeconds = 3600


class Group(ConfigModel):
    """Which jobs the group covers, which entries suit them, and how many pilots at most."""

    enabled: bool = True
    job_constraint: ClassAdExpr = "true"
    match_expr: ClassAdExpr = "true"
    """Evaluated with MY = the job shape and TARGET = the entry ad."""
    match_index: MatchIndex | None = None
    """Used only where ``match_expr`` provably implies it (`updraft.frontend.matching.plan_index`);
    ``updraft frontend check-config`` says when it does not."""
    match_job_requirements: bool = True
    """Also evaluate each job's own ``Requirements`` against the slot the entry's pilots will offer
    (`updraft.frontend.prospective`), and the group's ``pilot_start`` against the job: jobs the
    negotiator will never put on those pilots create no demand there. False: ``match_expr`` alone,
    as before Updraft read the jobs' requirements."""
    old_idle_seconds: IntervalSeconds = 600
    """Jobs idle longer than this are 'old idle' and earn the group a reserve."""
    min_pilot_lifetime_seconds: NonNegativeLifetimeSeconds = 1800
    """An idle pilot slot counts as capacity only if it lives at least this much longer."""
    ramp_up_attenuation: Annotated[float, Field(ge=1, le=MAX_ATTENUATION, allow_inf_nan=False)] = 3.0
    """Only 1/attenuation of the missing pilots are requested per cycle."""
    reserve_idle: Count = 2
    """Extra idle pilots per entry while old idle jobs wait there."""
    curb_fraction: Fraction = 0.8
    """Past this fraction of a maximum, the request is halved."""
    limits: GroupLimits = Field(default_factory=GroupLimits)
    removal: Removal = Field(default_factory=Removal)
    pilot_start: ClassAdExpr | None = None
    """Added to the START of this group's pilots (with the entry's own): which jobs they run."""
    staging_files: FrozenList[StagedFileConfig] = ()
    """This group's files for its pilots (validation scripts, condor config), after ``staging.files``."""
    idle_feedback: IdleFeedback = Field(default_factory=IdleFeedback)
    """Stop counting a shape's jobs on an entry whose idle pilots keep refusing them (`IdleFeedback`)."""


class PilotTokens(ConfigModel):
    """How the frontend mints the token its pilots' startds join the VO pool with (one per entry)."""

    signing_key_file: ReadHere
    """The VO pool's signing key (its SEC_PASSWORD_DIRECTORY/POOL); the JWT ``kid`` is its file name."""
    trust_domain: NonBlankStr
    """The VO pool's TRUST_DOMAIN (by default its UID_DOMAIN): the tokens' issuer."""
    identity: Identity
    """Who the pilots are in the VO pool; its collector's ALLOW_ADVERTISE_STARTD must list it."""
    lifetime_seconds: LifetimeSeconds = 86400
    refresh_seconds: LifetimeSeconds = 6 * 3600
    """A token with less than this left is replaced: a pilot may wait in a queue for hours."""

    @model_validator(mode="after")
    def _refresh_within_lifetime(self) -> PilotTokens:
        if self.refresh_seconds >= self.lifetime_seconds:
            raise PydanticCustomError(
                "refresh_order",
                "refresh_seconds ({refresh}) must be below lifetime_seconds "
                "({lifetime}), or every cycle mints a new token",
                {"refresh": self.refresh_seconds, "lifetime": self.lifetime_seconds},
            )
        return self


class FrontendMonitoring(MonitoringConfig):
    """A frontend's ``monitoring:`` section: the same writers as a factory's, and no notifiers.

    Notifiers announce entry health changes, and only the factory changes an
    entry's health: notifiers here would be accepted and never send anything,
    so an operator would wait for mail that cannot come.
    """

    @field_validator("notifiers", mode="before")
    @classmethod
    def _no_notifiers(cls, value: object) -> object:
        if value:
            raise ValueError(
                "notifiers belong in the factory's configuration (its monitoring.notifiers): only the factory "
                "changes entry health, so a frontend has nothing to announce"
            )
        return value


class FrontendConfig(ServiceConfig):
    """The whole frontend configuration, after merging ``frontend.yaml`` and ``frontend.d/``."""

    vo_collector: HostPort
    monitoring: FrontendMonitoring = Field(default_factory=FrontendMonitoring)
    schedds: FrozenList[NonBlankStr] = ()
    """Schedds whose jobs count; empty means every schedd in the VO collector."""
    limits: Limits = Field(default_factory=Limits)
    """For all of this frontend's pilots."""
    pool: Limits = Field(default_factory=lambda: Limits(max_idle_pilots=2000, max_running_pilots=20000))
    """For every pilot in the VO pool, this frontend's or not."""
    factories: FrozenMap[Name, FactoryRef] = Field(min_length=1)
    groups: FrozenMap[Name, Group] = Field(min_length=1)
    work_dir: AbsolutePath = Path("/var/lib/updraft/frontend")
    """The running frontend's pid file (for ``reconfig``)."""
    pilot_collector: HostPort | None = None
    """The collector pilots join; unset: ``vo_collector``."""
    staging: StagingSettings | None = None
    """The frontend's staging area (one release per group, written by ``reconfig`` and at start)."""
    identity: Identity | None = None
    """Who the WMS collector authenticates this frontend as; sealed into every credential, and the
    factory checks the two agree. Required with ``pilot_tokens``."""
    pilot_tokens: PilotTokens | None = None
    """Mint pilot tokens and send them, sealed to each factory's key, with the requests."""
    hold_last_request_seconds: Annotated[int, Field(ge=0, le=MAX_HOLD_SECONDS)] = 900
    """While data a request depends on is missing (entry ads, pilot slots, a user schedd), the last
    good request is kept, never lowered and never removing, for at most this long after the data was
    last complete; then it is withdrawn (a factory submits nothing and removes nothing for a request it
    does not have). 0 withdraws at once. Long enough to ride out a daemon restart, short enough that a
    frontend blind to its pool stops steering the factory within a quarter hour."""

    @model_validator(mode="after")
    def _tokens_need_an_identity(self) -> FrontendConfig:
        if self.pilot_tokens is not None and self.identity is None:
            raise PydanticCustomError(
                "identity_required",
                "identity: required with pilot_tokens (the factory "
                "checks the identity sealed with the token against the authenticated one)",
            )
        return self


def load_frontend_config(
    path: Path | str, *, on_warning: Callable[[str], None] | None = None
) -> Loaded[FrontendConfig]:
    """Read and validate the frontend config at `path` plus its ``.d/`` drop-ins.

    Warnings go to `on_warning`, or to the ``updraft.config`` log if it is None.
    """
    return load_layered(path, FrontendConfig, on_warning=on_warning)

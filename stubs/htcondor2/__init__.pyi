import enum
from collections.abc import Iterator, Mapping, MutableMapping

from classad2 import ClassAd, ExprTree

class HTCondorException(Exception): ...

class AdType(enum.IntEnum):
    Startd = 0
    Schedd = 1
    Master = 2
    Submitter = 6
    Collector = 7
    Any = 10
    Negotiator = 13
    Generic = 15
    Credd = 16
    Grid = 19
    Slot = 24

class DaemonType(enum.IntEnum):
    Any = 1
    Master = 2
    Schedd = 3
    Startd = 4
    Collector = 5
    Negotiator = 6
    Credd = 13
    Generic = 18

class DaemonCommand(enum.IntEnum):
    DaemonOn = 469
    DaemonOff = 467
    DaemonOffFast = 468
    DaemonsOn = 483
    DaemonsOff = 454
    OffFast = 60006
    OffGraceful = 60005
    OffPeaceful = 60015
    Reconfig = 60004
    Restart = 453

class JobAction(enum.IntEnum):
    Hold = 1
    Release = 2
    Remove = 3
    RemoveX = 4
    Vacate = 5
    VacateFast = 6
    Suspend = 8
    Continue = 9

class QueryOpt(enum.IntFlag):
    Default = 0x00
    AutoCluster = 0x01
    GroupBy = 0x02
    DefaultMyJobsOnly = 0x04
    SummaryOnly = 0x08
    IncludeClusterAd = 0x10
    IncludeJobsetAds = 0x20

class Collector:
    def __init__(self, pool: str | ClassAd | list[str] | tuple[str, ...] | None = None) -> None: ...
    def query(
        self,
        ad_type: AdType = ...,
        constraint: str | ExprTree | None = None,
        projection: list[str] | None = None,
        statistics: str | None = None,
    ) -> list[ClassAd]: ...
    def locate(self, daemon_type: DaemonType, name: str | None = None) -> ClassAd: ...
    def locateAll(self, daemon_type: DaemonType) -> list[ClassAd]: ...
    def advertise(self, ad_list: list[ClassAd], command: str = "UPDATE_AD_GENERIC", use_tcp: bool = True) -> None: ...

class SubmitResult:
    def cluster(self) -> int: ...
    def first_proc(self) -> int: ...
    def num_procs(self) -> int: ...
    def clusterad(self) -> ClassAd: ...

class Submit(MutableMapping[str, str]):
    def __init__(self, input: str | Mapping[str, str] | None = None, **kwargs: str) -> None: ...
    def __getitem__(self, key: str) -> str: ...
    def __setitem__(self, key: str, value: str) -> None: ...
    def __delitem__(self, key: str) -> None: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def expand(self, attr: str) -> str: ...

class Schedd:
    def __init__(self, location: ClassAd | None = None) -> None: ...
    def submit(self, description: Submit, count: int = 0, spool: bool = False) -> SubmitResult: ...
    def query(
        self,
        constraint: str | ExprTree = "True",
        projection: list[str] = ...,
        callback: object = None,
        limit: int = -1,
        opts: QueryOpt = ...,
    ) -> list[ClassAd]: ...
    def history(
        self,
        constraint: str | ExprTree | None = None,
        projection: list[str] = ...,
        match: int = -1,
    ) -> Iterator[ClassAd]: ...
    def act(
        self,
        action: JobAction,
        job_spec: str | ExprTree | list[str] | int,
        reason: str | tuple[str, int | None] | None = None,
    ) -> ClassAd: ...

def reload_config(root_config_file: str | None = None) -> None: ...
def send_command(ad: ClassAd, dc: DaemonCommand, target: str | None = None) -> None: ...

"""Hostile input, generated: every case is read safely or refused with a bounded reason naming the field.

    .venv/bin/python bench/fuzz.py [--cases 10000] [--seed 1] [--kind request ...]

Five kinds, each from a valid example mangled at random (values replaced by
junk: NUL and control characters, huge and non-finite numbers, 100,000
characters, paths, lists, nested ads; attributes dropped or added; for
texts, bytes flipped, lines cut, markers doubled):

- request ads, as the factory reads them (`parse_requests`, then the
  accepted ones through `accepted_requests`, which opens their credentials);
- entry ads and factory ads, as the frontend reads them (`parse_entry`,
  `parse_factory_key`);
- pilot reports, as the factory reads a pilot's output file
  (`read_report`, then the completed-pilot statistics);
- config files, factory and frontend (`load_*_config`).

Prints per kind: cases, accepted, refused, crashes (any exception other than
a refusal, or an accepted value breaking an invariant; must be 0), the
slowest case in ms, and the distinct refusal reasons (values that vary
between ads folded away). Every case runs in a fresh temporary work folder
as the current directory, watched by an audit hook: any file opened for
writing, created, renamed or removed outside it is reported (Python's own
bytecode cache excepted). Exit 1 on any crash or write outside.
`tests/unit/test_fuzz_inputs.py` runs a few hundred cases per kind.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from updraft import envelope, protocol
from updraft.errors import ConfigError
from updraft.factory import completed
from updraft.factory.config import load_factory_config
from updraft.factory.observe import parse_requests
from updraft.factory.policy import accepted_requests
from updraft.frontend.config import load_frontend_config
from updraft.frontend.credentials import parse_factory_key
from updraft.frontend.observe import parse_entry
from updraft.glidein.report import REPORT_BEGIN, REPORT_END
from updraft.summary import reason_kind

MAX_REASON = 600
"""A refusal longer than this is not a bounded reason."""
TRUSTED = {"fac1": "factory@lab"}
FACTORY_KEY = X25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_ID = envelope.key_id(FACTORY_KEY.public_key())


class Violation(AssertionError):
    """An accepted case that breaks an invariant, or a refusal that is unbounded or names no field."""


# ----------------------------------------------------------------------------- junk


def junk(rng: random.Random) -> Any:
    """One hostile value."""
    choice = rng.randrange(22)
    simple: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        2**31,
        -(2**63),
        10**30,
        float("nan"),
        float("inf"),
        -0.0,
        1e308,
        "",
        " ",
        "x\0y",
        "a\nb\r\x1b[2J",
        "../../etc/passwd",
        "x" * 100_000,
        [1, "a", None],
        {"nested": {"deeper": [1, 2]}},
    ]
    if choice < len(simple):
        return simple[choice]
    if choice == len(simple):
        return rng.randint(-(2**70), 2**70)
    return "".join(
        chr(rng.choice([rng.randrange(0, 32), rng.randrange(32, 127), rng.randrange(127, 0x2FFF)]))
        for _ in range(rng.randrange(1, 40))
    )


def mangled(base: Mapping[str, Any], rng: random.Random, extra_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """`base` with 1 to 4 attributes replaced by junk or dropped, sometimes an unknown one added."""
    ad = dict(base)
    names = sorted({*base, *extra_names})
    for name in rng.sample(names, rng.randint(1, min(4, len(names)))):
        if rng.random() < 0.15:
            ad.pop(name, None)
        else:
            ad[name] = junk(rng)
    if rng.random() < 0.2:
        ad[junk_name(rng)] = junk(rng)
    return ad


def junk_name(rng: random.Random) -> str:
    return rng.choice(["", "x" * 500, "Updraft\0Foo", "../x", "Ünïcode", f"Attr{rng.randrange(1000)}"])


# ----------------------------------------------------------------------------- cases


@dataclass
class Outcome:
    """accepted, or refused with the reason."""

    accepted: bool
    reason: str = ""


def _bounded(reason: object, fields: tuple[str, ...]) -> Outcome:
    """A refusal, checked: a short string naming one of `fields`, safe to log (typed str, but read
    from code under test: checked, not trusted)."""
    if not isinstance(reason, str) or not reason or len(reason) > MAX_REASON:
        raise Violation(f"reason unbounded or empty: {str(reason)[:200]!r}")
    if not any(name in reason for name in fields):
        raise Violation(f"reason names no field: {reason[:200]!r}")
    _log_safe(reason)
    return Outcome(False, reason)


def _log_safe(reason: str) -> None:
    """A reason is logged: a control character from the input (NUL, ESC, CR) must arrive escaped."""
    if any((ord(c) < 32 and c != "\n") or c == "\x7f" for c in reason):
        raise Violation(f"a control character reaches the log: {reason[:200]!r}")


def good_request() -> dict[str, Any]:
    return {
        "MyType": protocol.REQUEST_TYPE,
        "Name": "vo1.main/ce1@fac1",
        "UpdraftSchema": protocol.SCHEMA,
        protocol.IDENTITY: "frontend@lab",
        protocol.R_FRONTEND: "vo1",
        protocol.R_GROUP: "main",
        protocol.R_FACTORY: "fac1",
        protocol.R_ENTRY: "ce1",
        protocol.R_SECURITY_CLASS: "default",
        protocol.R_IDLE: 3,
        protocol.R_MAX: 10,
        protocol.R_REMOVE: "idle",
        protocol.R_REMOVE_MAX: 2,
        protocol.R_PILOT_COLLECTOR: "127.0.0.1:9618",
        protocol.R_MANIFEST_URL: "https://vo.example/stage/manifest",
        protocol.R_MANIFEST_SHA256: "0" * 64,
        protocol.R_GROUP_START: "True",
        protocol.R_CREDENTIAL: "v1.AAAA",
    }


def request_case(rng: random.Random, _work: Path) -> Outcome:
    ad = mangled(good_request(), rng)
    requests, malformed = parse_requests([ad], "fac1")
    if malformed:
        return _bounded(malformed[0], (*protocol.REQUEST_PROJECTION, "UpdraftSchema"))
    if not requests:
        return Outcome(False, "addressed to another factory: not ours to judge")
    [read] = requests
    for name in (read.frontend, read.group, read.factory, read.entry, read.security_class):
        if not (protocol.NAME.fullmatch(name) and len(name) <= protocol.MAX_NAME):
            raise Violation(f"accepted name {name[:80]!r}")
    counts: tuple[object, ...] = (read.idle, read.max_pilots, read.remove_max)
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= protocol.MAX_COUNT:
            raise Violation(f"accepted count {count!r}")
    protocol.pilot_params_problem(read.pilot)  # must answer, not raise
    [opened] = accepted_requests([read], "fac1", [], 1_800_000_000.0, {KEY_ID: FACTORY_KEY})
    if opened.credential is not None:
        raise Violation("a mangled credential opened")
    return Outcome(True)


def good_entry() -> dict[str, Any]:
    return {
        "MyType": protocol.ENTRY_TYPE,
        "Name": "ce1@fac1",
        "UpdraftSchema": protocol.SCHEMA,
        protocol.E_FACTORY: "fac1",
        protocol.E_ENTRY: "ce1",
        protocol.IDENTITY: "factory@lab",
        protocol.E_CPUS: 4,
        protocol.E_NODES: 1,
        protocol.E_MAX_PILOTS: 10,
        protocol.E_MAX_IDLE: 5,
        protocol.E_DOWNTIME: False,
        protocol.E_HEALTH: "degraded",
        protocol.E_HEALTH_REASON: "pilots slow to start",
        protocol.E_HEALTH_SINCE: 1_700_000_000,
        protocol.E_HEALTH_CAP: 3,
        "GLIDEIN_Site": "Site1",
    }


HEALTH_ATTRS = (protocol.E_HEALTH, protocol.E_HEALTH_REASON, protocol.E_HEALTH_SINCE, protocol.E_HEALTH_CAP)


def _check_health(entry: Any, why: str | None) -> None:
    """An entry read with a bad health value: the value named in a safe line, what was kept in range."""
    if why is not None:
        _bounded(why, HEALTH_ATTRS)
    health = entry.health
    if health is None:
        return
    if health.cap is not None and not 0 <= health.cap <= protocol.MAX_COUNT:
        raise Violation(f"accepted health cap {health.cap}")
    if len(health.reason) > 300 or not health.reason.isprintable():
        raise Violation(f"health reason kept unbounded or with control characters: {health.reason[:80]!r}")


def entry_case(rng: random.Random, _work: Path) -> Outcome:
    entry, why = parse_entry(mangled(good_entry(), rng), TRUSTED)
    if entry is None:
        if why is None:
            return Outcome(False, "another factory's entry: not ours to judge")
        return _bounded(why, (*protocol.ENTRY_PROJECTION, "came from"))
    if not (protocol.NAME.fullmatch(entry.name) and entry.factory in TRUSTED):
        raise Violation(f"accepted entry {entry.name[:80]!r} of {entry.factory[:80]!r}")
    if not (1 <= entry.cpus_per_pilot <= protocol.MAX_COUNT and 1 <= entry.nodes_per_pilot <= protocol.MAX_COUNT):
        raise Violation(f"accepted {entry.cpus_per_pilot} cpus x {entry.nodes_per_pilot} nodes")
    if not (0 <= entry.max_pilots <= protocol.MAX_COUNT and 0 <= entry.max_idle <= protocol.MAX_COUNT):
        raise Violation(f"accepted caps {entry.max_pilots}, {entry.max_idle}")
    _check_health(entry, why)
    return Outcome(True)


def good_factory_ad() -> dict[str, Any]:
    return {
        "MyType": protocol.FACTORY_TYPE,
        "Name": "fac1",
        protocol.E_FACTORY: "fac1",
        protocol.IDENTITY: "factory@lab",
        protocol.F_PUBLIC_KEY: envelope.public_key_text(FACTORY_KEY.public_key()),
        protocol.F_KEY_ID: KEY_ID,
    }


def factory_case(rng: random.Random, _work: Path) -> Outcome:
    key, why = parse_factory_key(mangled(good_factory_ad(), rng), TRUSTED)
    if key is None:
        if why is None:
            return Outcome(False, "another factory's ad: not ours to judge")
        return _bounded(why, (protocol.F_PUBLIC_KEY, protocol.F_KEY_ID, "came from", "public key"))
    if key.factory not in TRUSTED or key.key_id != KEY_ID:
        raise Violation(f"accepted key {key.key_id[:80]!r} of {key.factory[:80]!r}")
    return Outcome(True)


REPORT = [
    "report_version=2",
    "status=failed",
    "failed_step=validate",
    "reason=validation failed",
    "factory=fac1",
    "entry=ce1",
    "frontend=vo1",
    "group=main",
    "job_id=12.0",
    "credential_id=abc",
    "start_time=1800000000",
    "end_time=1800003600",
    "nodes=1",
    "cpus=8",
    "jobs_run=3",
    "busy_core_seconds=7200",
    "validation.1=entry/check.sh network no route",
]


def report_text(rng: random.Random) -> str:
    lines = list(REPORT)
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(lines))
        key = lines[where].partition("=")[0]
        action = rng.randrange(6)
        if action == 0:
            lines[where] = f"{key}={_report_junk(rng)}"
        elif action == 1:
            lines[where] = f"{junk_name(rng)}={_report_junk(rng)}"
        elif action == 2:
            del lines[where]
        elif action == 3:
            lines.insert(where, rng.choice([REPORT_BEGIN, REPORT_END, "\0" * 10, "=" * 50, "k" * 70_000]))
        elif action == 4:
            lines[where] = lines[where][: rng.randrange(len(lines[where]) + 1)]
        else:
            lines[where] = f"{key}={rng.choice(['-1', '9' * 19, '9' * 5000, '1e9', ' 3', '0x10'])}"
    body = [REPORT_BEGIN, *lines, REPORT_END]
    if rng.random() < 0.1:
        body.pop()  # cut short
    noise = ["condor output", "\x00\xff banner"] * rng.randrange(3)
    return "\n".join([*noise, *body, *noise[:1]])


def _report_junk(rng: random.Random) -> str:
    value = junk(rng)
    return value if isinstance(value, str) else str(value)


def report_case(rng: random.Random, work: Path) -> Outcome:
    out = work / "pilot.12.0.out"
    data = report_text(rng).encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.1:
        data = bytes(b ^ 0xFF if rng.random() < 0.01 else b for b in data)
    out.write_bytes(data)
    report, problem = completed.read_report(str(out), max_bytes=rng.choice([512, 64 * 1024, 256 * 1024]))
    pilot = completed.CompletedPilot("12.0", "ce1", "ce1", "vo1", "main", False, 1, 1, output=str(out))
    stats = completed.pilot_stats(completed.attach_report(pilot, report, problem))
    for name in ("lifetime_seconds", "core_seconds", "busy_core_seconds", "goodput_core_seconds", "waste_core_seconds"):
        value = getattr(stats, name)
        if not 0 <= value < 2**63:
            raise Violation(f"{name} = {value} does not fit a monitoring integer")
    labels = [*stats.failed_by_step, *stats.validation_failures_by_kind, *stats.no_report_by_problem]
    if any(len(label) > 64 for label in labels):
        raise Violation(f"an unbounded monitoring label: {max(labels, key=len)[:80]!r}")
    if report is None:
        return _bounded(problem, ("output", "report"))
    return Outcome(True)


FACTORY_CONFIG = {
    "name": "fac1",
    "wms_collector": "127.0.0.1:9618",
    "schedd": "factory@lab",
    "work_dir": "WORK",
    "entries": {
        "ce1": {
            "grid_type": "condor",
            "resource": "ce@site 127.0.0.1:9620",
            "frontends": {"vo1": {"identity": "frontend@lab"}},
            "limits": {"max_idle": 3},
        }
    },
    "credentials": {"key_rotation_seconds": 3600},
}
FRONTEND_CONFIG = {
    "name": "vo1",
    "vo_collector": "127.0.0.1:9618",
    "wms_collector": "127.0.0.1:9619",
    "identity": "frontend@lab",
    "work_dir": "WORK",
    "factories": {"fac1": {"identity": "factory@lab"}},
    "groups": {"main": {"match_expr": "true"}},
    "pilot_tokens": {
        "signing_key_file": "/etc/condor/passwords.d/POOL",
        "trust_domain": "lab",
        "identity": "pilot@lab",
    },
}


def _key_paths(config: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in config.items():
        yield (*prefix, key)
        if isinstance(value, Mapping):
            yield from _key_paths(value, (*prefix, key))


def _with(config: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(config)))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def config_text(rng: random.Random, base: Mapping[str, Any], work: Path) -> tuple[str, str | None]:
    """A config file's text, and the dotted key a refusal must name (None for text-level damage)."""
    base = yaml.safe_load(yaml.safe_dump(dict(base)).replace("WORK", str(work / "state")))
    if rng.random() < 0.75:
        path = rng.choice(list(_key_paths(base)))
        value = junk(rng)
        if isinstance(value, float) and value != value:
            value = ".nan"
        return yaml.safe_dump(_with(base, path, value), allow_unicode=True), ".".join(path)
    text = yaml.safe_dump(base)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text) + 1)
        text = (
            text[:at]
            + rng.choice(["\0", ":", "  ", "\n- ", "&a ", "*a", "{", "'", "\t", "%YAML 9\n", "!!python/object "])
            + text[at:]
        )
    return text, None


def config_case(rng: random.Random, work: Path) -> Outcome:
    kind, base, loader = rng.choice(
        [("factory", FACTORY_CONFIG, load_factory_config), ("frontend", FRONTEND_CONFIG, load_frontend_config)]
    )
    text, key = config_text(rng, base, work)
    file = work / f"{kind}.yaml"
    file.write_text(text, errors="surrogatepass")
    try:
        loader(file, on_warning=lambda _: None)
    except ConfigError as err:
        message = str(err)
        if str(file) not in message:
            raise Violation(f"config error without the file: {message[:200]!r}") from None
        if key is not None and key not in message:
            raise Violation(f"config error without the key {key}: {message[:200]!r}") from None
        reason = message.replace(str(file), "FILE")
        _log_safe(reason)
        if len(reason) > 20 * MAX_REASON:
            raise Violation(f"config error of {len(reason)} characters") from None
        lines = reason.splitlines() or [reason]
        listed = lines[0].startswith("invalid configuration") and len(lines) > 1
        return Outcome(False, lines[1].strip() if listed else lines[0])  # a list's first problem
    return Outcome(True)


KINDS: Mapping[str, Callable[[random.Random, Path], Outcome]] = {
    "request ads": request_case,
    "entry ads": entry_case,
    "factory ads": factory_case,
    "pilot reports": report_case,
    "config files": config_case,
}


# ----------------------------------------------------------------------------- running


@dataclass
class Tally:
    """What one kind's cases did."""

    cases: int = 0
    accepted: int = 0
    refused: int = 0
    crashes: list[str] = field(default_factory=list)
    slowest_ms: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class WriteWatch:
    """Every path opened for writing, created, moved or removed outside `allowed`, while `active`.

    An audit hook (it cannot be removed; it does nothing once `active` is False)."""

    allowed: Path
    active: bool = True
    outside: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open" and len(args) >= 3 and _writes(args[1], args[2]):
            self._check(args[0], None)
        elif event in _WRITING_EVENTS:
            paths, fds = _WRITING_EVENTS[event]
            for index in range(paths):
                fd = args[fds[index]] if fds and len(args) > fds[index] else None
                self._check(args[index], fd)

    def _check(self, path: Any, dir_fd: Any) -> None:
        if isinstance(path, int):
            return  # an open descriptor: its opening was checked
        text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if isinstance(dir_fd, int) and dir_fd >= 0 else os.getcwd()
        absolute = os.path.abspath(os.path.join(base, text))
        if "__pycache__" in absolute and ".pyc" in absolute:
            return  # Python's own bytecode cache
        if not absolute.startswith(str(self.allowed) + os.sep):
            self.outside.append(absolute)


_WRITING_EVENTS: Mapping[str, tuple[int, tuple[int, ...]]] = {
    "os.mkdir": (1, (2,)),
    "os.rename": (2, (2, 3)),
    "os.remove": (1, (1,)),
    "os.rmdir": (1, (1,)),
    "os.symlink": (2, (2, 2)),
    "os.link": (2, (2, 3)),
    "os.truncate": (1, ()),
    "os.chmod": (1, (2,)),
    "os.chown": (1, (3,)),
    "os.utime": (1, (4,)),
    "shutil.copyfile": (2, ()),
    "shutil.move": (2, ()),
}
"""Audit events that change the file system: how many leading arguments are paths, and where each
one's dir_fd argument is (a path relative to a folder descriptor, as `shutil.rmtree` passes them)."""


def _writes(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    return isinstance(flags, int) and bool(flags & writing)


@contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_kind(name: str, cases: int, seed: int, watch: WriteWatch) -> Tally:
    """`cases` cases of one kind, each in a fresh folder under `watch.allowed`."""
    case = KINDS[name]
    tally = Tally()
    rng = random.Random(f"{seed}:{name}")
    for number in range(cases):
        work = watch.allowed / f"{name.replace(' ', '-')}-{number}"
        work.mkdir()
        with _in_folder(work):
            started = time.perf_counter()
            try:
                outcome = case(rng, work)
            except Exception as err:  # the bench counts every crash instead of stopping at the first
                tally.crashes.append(f"case {number}: {type(err).__name__}: {str(err)[:300]}")
                outcome = None
            tally.slowest_ms = max(tally.slowest_ms, (time.perf_counter() - started) * 1000)
        tally.cases += 1
        if outcome is not None:
            tally.accepted += outcome.accepted
            tally.refused += not outcome.accepted
            if not outcome.accepted:
                tally.reasons[reason_kind(outcome.reason)[:160]] += 1
        shutil.rmtree(work)
    return tally


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="cases per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kind", action="append", choices=sorted(KINDS), help="only these kinds (repeatable)")
    parser.add_argument("--reasons", type=int, default=8, help="refusal reasons shown per kind")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="updraft-fuzz-") as root:
        watch = WriteWatch(Path(root).resolve())
        print(
            f"{'kind':<15} {'cases':>7} {'accepted':>9} {'refused':>8} {'crashes':>8} {'slowest ms':>11} {'reasons':>8}"
        )
        for name in args.kind or list(KINDS):
            tally = run_kind(name, args.cases, args.seed, watch)
            print(
                f"{name:<15} {tally.cases:>7} {tally.accepted:>9} {tally.refused:>8} {len(tally.crashes):>8} "
                f"{tally.slowest_ms:>11.1f} {len(tally.reasons):>8}"
            )
            for reason, count in tally.reasons.most_common(args.reasons):
                print(f"    {count:>6}  {_printable(reason)}")
            for crash in tally.crashes[:10]:
                print(f"    CRASH {crash}")
            failed |= bool(tally.crashes)
        watch.active = False
    print(f"files written outside the work folder: {len(watch.outside)}")
    for path in sorted(set(watch.outside))[:20]:
        print(f"    {path}")
    return 1 if failed or watch.outside else 0


if __name__ == "__main__":
    sys.exit(main())

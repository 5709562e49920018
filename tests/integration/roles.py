"""Acting as another lab identity: the factory's or the frontend's, in a process of its own.

The bindings keep their security sessions for the life of a process, so a
test process that switched its client config would go on presenting the
operator's token. Each call here runs one short Python process with the
role's client configuration instead, as the real factory or frontend would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from updraft.lab.topology import Role, Topology

_SCRIPT = """
import json, sys
from updraft.condor import Collector
collector, action = sys.argv[1], sys.argv[2]
if action == "advertise":
    Collector(collector).advertise(json.load(sys.stdin))
elif action == "advertise-raw":  # as another party's software would: no cleaning of values on the way
    import classad2, htcondor2
    ads = []
    for plain in json.load(sys.stdin):
        expressions = plain.pop("__expressions__", {})
        ad = classad2.ClassAd(plain)
        for name, text in expressions.items():
            ad[name] = classad2.ExprTree(text)
        ads.append(ad)
    htcondor2.Collector(collector).advertise(ads, "UPDATE_AD_GENERIC")
else:
    Collector(collector).invalidate(sys.argv[3], sys.argv[4])
"""


def _run_as(lab: Topology, role: Role, args: Sequence[str], stdin: str = "") -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_")},
        "CONDOR_CONFIG": str(lab.role_config(role)),
    }
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"as {role.identity}: {args}: {done.stderr.strip().splitlines()[-1:]}"


def advertise_as(lab: Topology, role: Role, collector: str, ads: Sequence[Mapping[str, Any]]) -> None:
    """Advertise `ads` to `collector` authenticated as `role`."""
    _run_as(lab, role, [collector, "advertise"], json.dumps([dict(ad) for ad in ads]))


def advertise_raw_as(lab: Topology, role: Role, collector: str, ads: Sequence[Mapping[str, Any]]) -> None:
    """Advertise `ads` as `role` with the bindings alone, as any other WMS writer's software can:
    values Updraft would clean before sending (a NUL byte) reach the collector as they are, and an
    ad's ``__expressions__`` ({attribute: ClassAd expression text}) become unevaluated expressions."""
    _run_as(lab, role, [collector, "advertise-raw"], json.dumps([dict(ad) for ad in ads]))


def invalidate_as(lab: Topology, role: Role, collector: str, my_type: str, constraint: str) -> None:
    """Withdraw the `my_type` ads matching `constraint` from `collector`, as `role`."""
    _run_as(lab, role, [collector, "invalidate", my_type, constraint])


_PROBE = """
import json, sys
import htcondor2
from updraft.condor import Collector, Schedd
from updraft.errors import CondorError
action, address, location = sys.argv[1], sys.argv[2], sys.argv[3]
calls = {
    "read-collector": lambda: len(Collector(address).query(htcondor2.AdType.Any, "true", ["Name"])),
    "advertise": lambda: Collector(address).advertise(
        [{"MyType": "UpdraftProbe", "Name": "probe", "UpdraftProbe": True}]
    ),
    "read-queue": lambda: len(Schedd(address, location).query("true", ["ClusterId"])),
    "read-history": lambda: len(Schedd(address, location).history("true", ["ClusterId"], limit=5)),
    "submit": lambda: Schedd(address, location).submit(
        {"executable": "/bin/true", "hold": "true", "+UpdraftScopeTest": "true"}
    ),
}
try:
    print(json.dumps({"ok": True, "result": calls[action]()}))
except CondorError as err:
    print(json.dumps({"ok": False, "result": str(err)}))
"""


@dataclass(frozen=True)
class Attempt:
    """What one call by one identity came to: allowed (with its result) or refused (with the error)."""

    ok: bool
    result: Any


def token_config(lab: Topology, folder: Path, token: str) -> Path:
    """A client configuration presenting `token` alone (a pilot's, say), in `folder`."""
    tokens = folder / "tokens.d"
    tokens.mkdir(mode=0o700, exist_ok=True)
    (tokens / "token").write_text(token + "\n")
    (tokens / "token").chmod(0o600)
    config = folder / "token-client.config"
    config.write_text(f"include : {lab.client_config}\nSEC_TOKEN_DIRECTORY = {tokens}\n")
    return config


def attempt(config: Path, action: str, address: str, location: str = "") -> Attempt:
    """Try `action` (read-collector, advertise, read-queue, read-history, submit) with client `config`.

    `address` is a collector's host:port, or for the schedd actions the
    schedd's name with its `location` ad, located beforehand by the operator
    so that the schedd itself, not a collector, decides.
    """
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_")}, "CONDOR_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, action, address, location], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{action} on {address}: {done.stderr.strip().splitlines()[-1:]}"
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return Attempt(found["ok"], found["result"])

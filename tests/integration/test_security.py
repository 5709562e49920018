"""Security on the lab, which runs on IDTOKENS alone with encryption and integrity required.

Layers: the lab (every identity its own token) -> pilots carrying good,
missing, foreign and wrongly named tokens, and a provisioning round by the
real frontend and factory with planted secrets -> assertions on the VO
collector, the schedds, and every log, monitoring output, ad and submit
description the round left behind.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from itertools import cycle
from pathlib import Path

import htcondor2
import pytest
import yaml

from updraft.condor import Collector, Schedd
from updraft.factory.config import FactoryConfig
from updraft.factory.credentials import keyring_path
from updraft.lab.control import LAB_DATABASE
from updraft.lab.labconfig import factory_config, frontend_config, write_component_configs
from updraft.lab.topology import FACTORY, FRONTEND, OPERATOR, PILOT, UID_DOMAIN, Topology
from updraft.lab.tsdb import influxql
from updraft.tokens import SCRAMBLE, SigningKey, derive_jwt_key, mint

from .jobs import glidein_job, pilot_token, wait_for, wait_for_completion
from .roles import attempt, invalidate_as, token_config
from .test_factory import updraft

CANARY_PASSWORD = "canary-influx-password-5b7e0c1d"
FACTORY_NAME = "security-factory"


def _slots(lab: Topology, cluster: int) -> list:
    return Collector(lab.vo.collector).query(
        htcondor2.AdType.Startd, f"GLIDEIN_ClusterId =?= {cluster}", ["Name", "AuthenticatedIdentity"]
    )


def test_only_a_pilot_with_a_valid_pilot_token_joins_the_vo_pool(
    lab: Topology, factory_schedd: Schedd, job_dir: Path
) -> None:
    """Four pilots on one site at once; the good one proves the others had time to join and did not."""
    foreign_key = SigningKey("POOL", derive_jwt_key(b"another pool's key", "POOL"))
    cases = {
        "good": "",
        "none": None,
        "foreign key": mint(foreign_key, PILOT.identity, UID_DOMAIN, 3600, time.time()),
        "not a pilot": pilot_token(lab, identity="mallory@lab"),
    }
    clusters = {}
    for name, token in cases.items():
        folder = job_dir / name.replace(" ", "-")
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)
        job = glidein_job(
            lab,
            folder,
            lab.sites[0],
            options="--max-idle 60 --idle-tail 10",
            token=token,
            credential_id=f"security-{name.replace(' ', '-')}",
        )
        clusters[name] = factory_schedd.submit(job)
    try:
        joined = wait_for(lambda: _slots(lab, clusters["good"]), 240)
        assert {ad["AuthenticatedIdentity"] for ad in joined} == {PILOT.identity}
        time.sleep(15)  # a few update intervals more for the others
        for name in ("none", "foreign key", "not a pilot"):
            assert not _slots(lab, clusters[name]), f"the pilot with {name} token joined the VO pool"
    finally:
        for cluster in clusters.values():
            factory_schedd.remove(f"ClusterId == {cluster}", "security test done")


def test_a_pilot_token_is_good_for_advertising_a_startd_and_nothing_else(
    lab: Topology, tmp_path: Path, vo_schedd: Schedd
) -> None:
    """The frontend's tokens are scoped: even for an identity that may submit, a pilot-scoped token cannot.

    (HTCondor lets an ADVERTISE_STARTD token read, as that level implies READ; it cannot write.)
    """
    tokens = tmp_path / "tokens.d"
    tokens.mkdir(mode=0o700)
    config = tmp_path / "scoped-client.config"
    config.write_text(f"include : {lab.client_config}\nSEC_TOKEN_DIRECTORY = {tokens}\n")
    script = (
        "import htcondor2, sys\n"
        f"c = htcondor2.Collector({lab.vo.collector!r})\n"
        f"s = htcondor2.Schedd(c.locate(htcondor2.DaemonType.Schedd, {lab.vo.schedd_name!r}))\n"
        "try:\n"
        "    r = s.submit(htcondor2.Submit({'executable': '/bin/true', 'hold': 'true', '+UpdraftScopeTest': 'true'}))\n"
        "except htcondor2.HTCondorException as err:\n"
        "    print('refused:', err); sys.exit(3)\n"
        "print('submitted', r.cluster()); sys.exit(0)\n"
    )

    def submit_with(token: str) -> subprocess.CompletedProcess:
        (tokens / "token").write_text(token + "\n")
        (tokens / "token").chmod(0o600)
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CONDOR_CONFIG": str(config)},
        )

    try:
        refused = submit_with(pilot_token(lab, identity=OPERATOR.identity))
        assert refused.returncode == 3, refused.stdout + refused.stderr
        allowed = submit_with(pilot_token(lab, identity=OPERATOR.identity, authz=("WRITE",)))
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr  # the scope, not the identity, refused
    finally:
        vo_schedd.remove("UpdraftScopeTest =?= true", "security test done")


# ---------------------------------------------------------------------- who may do what, on the real daemons

ALLOWED, REFUSED = True, False
MATRIX = [
    # A pilot's token: advertising its startd to the VO collector (the tests above), nothing else.
    ("pilot", "read-queue", "vo-schedd", REFUSED),
    ("pilot", "read-history", "vo-schedd", REFUSED),
    ("pilot", "read-queue", "vo-schedd2", REFUSED),
    ("pilot", "read-queue", "factory-schedd", REFUSED),
    ("pilot", "read-history", "factory-schedd", REFUSED),
    ("pilot", "submit", "factory-schedd", REFUSED),
    ("pilot", "read-queue", "ce", REFUSED),
    ("pilot", "read-collector", "vo-collector", REFUSED),
    ("pilot", "read-collector", "wms-collector", REFUSED),
    ("pilot", "advertise", "wms-collector", REFUSED),
    # The factory: the WMS collector, its own schedd and the CEs; nothing of the VO.
    ("factory", "submit", "vo-schedd", REFUSED),
    ("factory", "submit", "vo-schedd2", REFUSED),
    ("factory", "read-queue", "vo-schedd", REFUSED),
    ("factory", "read-history", "vo-schedd", REFUSED),
    ("factory", "read-collector", "vo-collector", REFUSED),
    ("factory", "advertise", "vo-collector", REFUSED),
    ("factory", "read-collector", "wms-collector", ALLOWED),
    ("factory", "advertise", "wms-collector", ALLOWED),
    ("factory", "read-queue", "factory-schedd", ALLOWED),
    ("factory", "read-history", "factory-schedd", ALLOWED),
    ("factory", "submit", "factory-schedd", ALLOWED),
    ("factory", "read-collector", "ce-collector", ALLOWED),
    ("factory", "submit", "ce", ALLOWED),
    # The frontend: reads the VO pool and its user schedds, writes to the WMS collector; submits nowhere.
    ("frontend", "submit", "factory-schedd", REFUSED),
    ("frontend", "read-queue", "factory-schedd", REFUSED),
    ("frontend", "read-history", "factory-schedd", REFUSED),
    ("frontend", "submit", "vo-schedd", REFUSED),
    ("frontend", "submit", "ce", REFUSED),
    ("frontend", "read-collector", "ce-collector", REFUSED),
    ("frontend", "advertise", "vo-collector", REFUSED),
    ("frontend", "read-collector", "vo-collector", ALLOWED),
    ("frontend", "read-queue", "vo-schedd", ALLOWED),
    ("frontend", "read-history", "vo-schedd2", ALLOWED),
    ("frontend", "read-collector", "wms-collector", ALLOWED),
    ("frontend", "advertise", "wms-collector", ALLOWED),
    # The users (and the lab's operator): submit to the user schedds; never write ads.
    ("operator", "submit", "vo-schedd", ALLOWED),
    ("operator", "submit", "vo-schedd2", ALLOWED),
    ("operator", "advertise", "wms-collector", REFUSED),
    ("operator", "advertise", "vo-collector", REFUSED),
]


@pytest.fixture(scope="module")
def identities(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A client configuration per identity: the lab's roles, and a pilot token as the frontend mints it."""
    folder = tmp_path_factory.mktemp("pilot-identity")
    return {
        "pilot": token_config(lab, folder, pilot_token(lab)),
        "factory": lab.role_config(FACTORY),
        "frontend": lab.role_config(FRONTEND),
        "operator": lab.role_config(OPERATOR),
    }


@pytest.fixture(scope="module")
def daemons(lab: Topology) -> Iterator[dict[str, tuple[str, str]]]:
    """Each daemon of the matrix as (address or schedd name, location ad), the schedds located by the
    operator so that the schedd itself, not a collector, decides. Jobs and ads the allowed calls left
    are removed afterwards."""
    site = lab.sites[0].instance
    schedds = {
        "vo-schedd": Collector(lab.vo.collector).schedd(lab.vo.schedd),
        "vo-schedd2": Collector(lab.vo.collector).schedd(lab.submit2.schedd),
        "factory-schedd": Collector(lab.wms.collector).schedd(lab.factory.schedd),
        "ce": Collector(site.collector).schedd(site.schedd),
    }
    yield {
        **{name: (schedd.name, schedd.location) for name, schedd in schedds.items()},
        "vo-collector": (lab.vo.collector, ""),
        "wms-collector": (lab.wms.collector, ""),
        "ce-collector": (site.collector, ""),
    }
    for schedd in schedds.values():
        schedd.remove("UpdraftScopeTest =?= true", "security test done")
    invalidate_as(lab, FACTORY, lab.wms.collector, "UpdraftProbe", "true")


@pytest.mark.parametrize(
    ("who", "action", "daemon", "allowed"),
    MATRIX,
    ids=[f"{who}-{action}-{daemon}" for who, action, daemon, _ in MATRIX],
)
def test_each_identity_may_do_on_each_daemon_only_what_its_role_needs(
    identities: dict[str, Path], daemons: dict[str, tuple[str, str]], who: str, action: str, daemon: str, allowed: bool
) -> None:
    """The matrix of docs/security.md, tried against the real daemons; a refusal must be the daemon's
    "DENIED" (or the collector closing on us), never a daemon that is down: the operator's control
    below shows each one answers."""
    done = attempt(identities[who], action, *daemons[daemon])
    assert done.ok == allowed, f"{who} {action} on {daemon}: {done.result}"
    if not allowed:
        assert "DENIED" in done.result or "Failed" in done.result, done.result
        if action != "advertise":
            control = attempt(identities["operator"], action, *daemons[daemon])
            assert control.ok, f"the operator's control call failed too: {control.result}"


def test_a_refusal_of_a_pilot_is_the_schedd_saying_denied_to_its_identity(
    identities: dict[str, Path], daemons: dict[str, tuple[str, str]]
) -> None:
    """Not a broken connection: the schedd authenticated the pilot token, then refused it."""
    for daemon in ("vo-schedd", "factory-schedd"):
        done = attempt(identities["pilot"], "read-history", *daemons[daemon])
        assert not done.ok and f'"DENIED" from server for user {PILOT.identity}' in done.result


# ---------------------------------------------------------------------- the staging web server


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_labs_staging_server_serves_regular_files_and_never_a_symlink(lab: Topology) -> None:
    """Links planted under www/ (to a file outside, to a folder outside) are refused by the running server,
    and so is every way of climbing out of www/; a plain file beside them is served."""
    outside = lab.base_dir / "outside-www"
    outside.mkdir(exist_ok=True)
    secret = b"outside the staging folder\n"
    (outside / "secret").write_bytes(secret)
    planted = lab.staging_dir / "planted"
    planted.mkdir(exist_ok=True)
    (planted / "plain").write_bytes(b"served\n")
    for name, target in (("file-link", outside / "secret"), ("folder-link", outside)):
        (planted / name).unlink(missing_ok=True)
        (planted / name).symlink_to(target)
    base = lab.staging_url
    assert _fetch(f"{base}/planted/plain") == (200, b"served\n")
    for path in (
        "/planted/file-link",
        "/planted/folder-link/secret",
        "/planted/../../outside-www/secret",
        "/planted/%2e%2e/%2e%2e/outside-www/secret",
        "/planted%2f..%2f..%2foutside-www%2fsecret",
    ):
        status, body = _fetch(base + path)
        assert status in (400, 404) and secret not in body, (path, status)


# ---------------------------------------------------------------------- the canary round


@pytest.fixture(scope="module")
def canary_configs(lab: Topology, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The lab's factory (under a name of its own) and frontend, the factory's monitoring given a planted password."""
    write_component_configs(lab)
    folder = tmp_path_factory.mktemp("security")
    factory = factory_config(lab)
    factory["name"] = FACTORY_NAME
    factory["work_dir"] = str(lab.work_dir / "security-factory")
    factory["monitoring"]["dir"] = str(lab.work_dir / "security-factory" / "monitoring")
    influx = factory["monitoring"]["writers"]["influxdb"]
    influx.update(username="canary", password=CANARY_PASSWORD)
    for entry in factory["entries"].values():
        entry["glidein"] = {**entry["glidein"], "idle_tail_seconds": 15, "retire_spread_seconds": 0}
    frontend = frontend_config(lab)
    frontend["factories"] = {FACTORY_NAME: frontend["factories"]["lab-factory"]}
    frontend["work_dir"] = str(lab.work_dir / "security-frontend")
    frontend["monitoring"]["dir"] = str(lab.work_dir / "security-frontend" / "monitoring")
    paths = folder / "factory.yaml", folder / "frontend.yaml"
    for path, content in zip(paths, (factory, frontend), strict=True):
        path.write_text(yaml.safe_dump(content))
    updraft("factory", "reconfig", "--config", str(paths[0]))
    updraft("frontend", "reconfig", "--config", str(paths[1]))
    return paths


@pytest.fixture(scope="module")
def canary_round(
    lab: Topology,
    canary_configs: tuple[Path, Path],
    factory_schedd: Schedd,
    vo_schedd: Schedd,
    tmp_path_factory: pytest.TempPathFactory,
):
    """A full provisioning round: a user job, the frontend's request, the factory's pilot, the job run on it.

    Returns the secrets that existed during the round: the pilot tokens (read
    from the factory's store while the pilots were queued), the factory's
    private key, the VO pool's signing password and the planted InfluxDB password.
    """
    factory_yaml, frontend_yaml = canary_configs
    job_dir = tmp_path_factory.mktemp("canary-job")
    job_dir.chmod(0o777)
    shared = lab.work_dir / "tests" / "canary"
    shared.mkdir(parents=True, exist_ok=True)
    shared.chmod(0o777)
    user = vo_schedd.submit(
        {
            "executable": "/bin/echo",
            "arguments": "canary",
            "initialdir": str(shared),
            "output": str(shared / "user.out"),
            "log": str(shared / "user.log"),
            "request_memory": "128",
            "+DESIRED_Sites": '"Site1"',
            "requirements": "IS_GLIDEIN =?= True",
            "should_transfer_files": "YES",
        }
    )
    factory = FactoryConfig.model_validate(yaml.safe_load(factory_yaml.read_text()))
    store = factory.work_dir / "credentials"
    tokens: set[str] = set()
    try:
        updraft("factory", "once", "--config", str(factory_yaml))  # advertises the entries and the key

        def cycle_once() -> bool:
            updraft("-v", "frontend", "once", "--config", str(frontend_yaml))
            updraft("-v", "factory", "once", "--config", str(factory_yaml))
            tokens.update(p.read_text().strip() for p in store.glob("*/*.token"))
            return bool(factory_schedd.query(f'UpdraftFactory =?= "{FACTORY_NAME}"', ["ClusterId"]))

        wait_for(cycle_once, 90, interval=2)
        assert tokens, "the factory stored no pilot token"
        done = wait_for_completion(vo_schedd, user, 300)
        assert done["ExitCode"] == 0
        updraft("factory", "once", "--config", str(factory_yaml))  # reports to monitoring after the run
        raw = (lab.secrets_dir / "POOL").read_bytes()
        password = bytes(b ^ s for b, s in zip(raw, cycle(SCRAMBLE)))
        ring = json.loads(keyring_path(factory).read_text())
        yield {
            **{f"pilot token {i}": t for i, t in enumerate(sorted(tokens))},
            **{f"pilot token {i} signature": t.rsplit(".", 1)[1] for i, t in enumerate(sorted(tokens))},
            "factory private key": ring["current"]["key"],
            "factory private key (hex)": base64.b64decode(ring["current"]["key"]).hex(),
            "pool signing password": password.decode("ascii"),
            "influxdb password": CANARY_PASSWORD,
        }
    finally:
        invalidate_as(lab, FACTORY, lab.wms.collector, "UpdraftEntry", f'UpdraftFactory == "{FACTORY_NAME}"')
        factory_schedd.remove(f'UpdraftFactory =?= "{FACTORY_NAME}"', "security test done")
        vo_schedd.remove(f"ClusterId == {user}", "security test done")


def _files_to_search(lab: Topology) -> Iterable[Path]:
    """Every log, monitoring output and pilot output of the lab; not the stores meant to hold secrets."""
    roots = [*lab.base_dir.glob("daemons/*/log"), lab.work_dir]
    stores = {"credentials", "keyring"}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not stores.intersection(path.relative_to(lab.base_dir).parts):
                yield path


def _ads_text(lab: Topology, factory_schedd: Schedd) -> str:
    """Every ad in both collectors, and every pilot's job ad (its rendered submit description), whole."""
    texts = []
    for collector in (lab.vo.collector, lab.wms.collector):
        texts += [str(ad) for ad in Collector(collector).query(htcondor2.AdType.Any, "true")]
    for schedd in (
        factory_schedd,
        *(Collector(s.instance.collector).schedd(s.instance.schedd_name) for s in lab.sites),
    ):
        texts += [str(ad) for ad in schedd.query("true")]
        texts += [str(ad) for ad in schedd.history("true", [], limit=200)]
    return "\n".join(texts)


def test_no_secret_of_the_round_reaches_a_log_monitoring_an_ad_or_a_submit_file(
    lab: Topology, canary_round: dict[str, str], factory_schedd: Schedd
) -> None:
    needles = {name: secret.encode() for name, secret in canary_round.items()}
    assert len([n for n in needles if n.startswith("pilot token") and "signature" not in n]) >= 1
    searched, hits = 0, []
    for path in _files_to_search(lab):
        data = path.read_bytes()
        searched += 1
        hits += [f"{name} in {path}" for name, needle in needles.items() if needle in data]
    ads = _ads_text(lab, factory_schedd).encode()
    hits += [f"{name} in an ad" for name, needle in needles.items() if needle in ads]
    series = json.dumps(influxql(lab.influx_url, "SELECT * FROM /.*/ WHERE time > now() - 1h", LAB_DATABASE)).encode()
    hits += [f"{name} in InfluxDB" for name, needle in needles.items() if needle in series]
    assert searched > 100 and b"security-factory" in series  # the search saw the round's outputs
    assert not hits, hits


def test_the_factory_ad_carries_its_public_key_and_the_pilots_carry_only_a_credential_id(
    lab: Topology, canary_round: dict[str, str], factory_schedd: Schedd
) -> None:
    ad = Collector(lab.wms.collector).generic_ads("UpdraftFactory", f'Name == "{FACTORY_NAME}"')
    assert ad and len(ad[0]["UpdraftKeyId"]) == 64 and ad[0]["AuthenticatedIdentity"] == FACTORY.identity
    ours, projection = (
        f'UpdraftFactory =?= "{FACTORY_NAME}"',
        ["UpdraftCredentialId", "TransferInput", "EncryptInputFiles", "Environment"],
    )
    pilots = [*factory_schedd.query(ours, projection), *factory_schedd.history(ours, projection, limit=20)]
    assert pilots
    for pilot in pilots:
        assert len(pilot["UpdraftCredentialId"]) == 32
        assert pilot["TransferInput"].endswith(f"{pilot['UpdraftCredentialId']}.token")
        assert pilot["EncryptInputFiles"] == pilot["TransferInput"]
        assert f"UPDRAFT_PILOT_TOKEN={pilot['UpdraftCredentialId']}.token" in pilot["Environment"]


def test_the_factory_deletes_a_pilot_token_once_no_queued_pilot_needs_it(
    lab: Topology, canary_configs: tuple[Path, Path], canary_round: dict[str, str], factory_schedd: Schedd
) -> None:
    factory_yaml, _ = canary_configs
    factory = FactoryConfig.model_validate(yaml.safe_load(factory_yaml.read_text()))
    store = factory.work_dir / "credentials"
    invalidate_as(lab, FRONTEND, lab.wms.collector, "UpdraftRequest", f'UpdraftFactory == "{FACTORY_NAME}"')
    live = factory_schedd.query(f'UpdraftFactory =?= "{FACTORY_NAME}"', ["ClusterId"])
    if live:  # a queued pilot keeps its token: the store still holds it
        updraft("factory", "once", "--config", str(factory_yaml))
        assert list(store.glob("*/*.token"))
        factory_schedd.remove(f'UpdraftFactory =?= "{FACTORY_NAME}"', "security test done")
        wait_for(lambda: not factory_schedd.query(f'UpdraftFactory =?= "{FACTORY_NAME}"', ["ClusterId"]), 120)
    updraft("factory", "once", "--config", str(factory_yaml))
    assert not list(store.glob("*/*.token"))
    # The store's root stays the factory's, traversable only (its pilots' owner reads tokens below it);
    # each frontend's folder is private to that owner.
    assert store.stat().st_uid == os.getuid() and (store.stat().st_mode & 0o777) == 0o711
    for folder in store.iterdir():
        assert (folder.stat().st_mode & 0o777) == 0o700 and folder.stat().st_uid == FACTORY.uid

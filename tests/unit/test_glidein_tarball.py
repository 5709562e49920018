"""glidein_startup.sh with HTCondor from a tarball: fetch, verify, the install step."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Literal

import pytest

from .test_glidein_startup import OK_SCRIPT, Pilot, assert_failed, fake_condor, sha256

WriteMode = Literal["w:gz", "w:xz", "w"]

MASTER = b'#!/bin/sh\necho "$0" > "$HOME/../master.ran"\nexit 0\n'


@pytest.fixture
def pilot(tmp_path: Path) -> Pilot:
    return Pilot(tmp_path)


def make_tarball(path: Path, members: dict[str, bytes], mode: WriteMode = "w:gz") -> tuple[str, str]:
    """A tarball of MEMBERS (name -> content; names ending in sbin/condor_master are executable)."""
    with tarfile.open(path, mode) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755 if name.endswith("condor_master") else 0o644
            tar.addfile(info, io.BytesIO(content))
    return f"file://{path}", sha256(path.read_bytes())


def tarball_args(url: str, digest: str) -> tuple[str, ...]:
    return ("--condor-tarball-url", url, "--condor-tarball-sha256", digest)


RELEASE = {"condor-24.0.1-x86_64/sbin/condor_master": MASTER, "condor-24.0.1-x86_64/bin/condor_status": b"#!/bin/sh\n"}


def test_release_one_directory_down_is_found_and_used(pilot: Pilot) -> None:
    url, digest = make_tarball(pilot.root / "condor.tar.gz", RELEASE)
    run = pilot.run(*tarball_args(url, digest))
    report = run.report
    assert report.ok, report.reason
    release = pilot.work / "condor-release" / "condor-24.0.1-x86_64"
    assert (release / "bin" / "condor_status").is_file()
    assert f"RELEASE_DIR = {release}" in run.config.splitlines()
    assert report.condor_source == "tarball"
    assert not (pilot.work / "condor-tarball").exists()  # unpacked, then dropped


def test_release_at_the_top_of_the_tarball(pilot: Pilot) -> None:
    url, digest = make_tarball(pilot.root / "condor.tar.gz", {"sbin/condor_master": MASTER})
    run = pilot.run(*tarball_args(url, digest))
    assert f"RELEASE_DIR = {pilot.work / 'condor-release'}" in run.config.splitlines()


@pytest.mark.parametrize(("name", "mode"), [("condor.tar.xz", "w:xz"), ("condor.tar", "w")])
def test_xz_and_plain_tarballs_are_recognised_by_their_content(pilot: Pilot, name: str, mode: WriteMode) -> None:
    url, digest = make_tarball(pilot.root / name, RELEASE, mode)
    report = pilot.run(*tarball_args(url, digest)).report
    assert report.ok and report.condor_source == "tarball", report.reason


def test_condor_master_from_the_tarball_runs(pilot: Pilot) -> None:
    url, digest = make_tarball(pilot.root / "condor.tgz", RELEASE)
    report = pilot.run(*tarball_args(url, digest), dry_run=False).report
    assert report.ok and report.condor_exit == 0, report.reason
    ran = (pilot.root / "master.ran").read_text().strip()
    assert ran == f"{pilot.work}/condor-release/condor-24.0.1-x86_64/sbin/condor_master"


def test_tarball_from_glidein_attributes(pilot: Pilot) -> None:
    url, digest = make_tarball(pilot.root / "condor.tar.gz", RELEASE)
    report = pilot.run(env={"GLIDEIN_Condor_Tarball_URL": url, "GLIDEIN_Condor_Tarball_SHA256": digest}).report
    assert report.ok and report.condor_source == "tarball", report.reason


@pytest.mark.parametrize("given", ["--condor-tarball-url", "--condor-tarball-sha256"])
def test_tarball_needs_both_url_and_sha(pilot: Pilot, given: str) -> None:
    value = "file:///nowhere.tar.gz" if given.endswith("url") else "c" * 64
    assert_failed(pilot.run(given, value), "args", "give both or neither", given)


def test_tarball_sha_mismatch_fails_verify(pilot: Pilot) -> None:
    url, _ = make_tarball(pilot.root / "condor.tar.gz", RELEASE)
    assert_failed(pilot.run(*tarball_args(url, "d" * 64)), "verify", "condor tarball")


def test_missing_tarball_fails_fetch(pilot: Pilot) -> None:
    run = pilot.run(*tarball_args(f"file://{pilot.root}/nowhere.tar.gz", "d" * 64))
    assert_failed(run, "fetch", "condor tarball", "nowhere.tar.gz")


@pytest.mark.parametrize("bad", ["../evil", "/abs/evil", "condor/../../evil", ".."])
def test_members_that_escape_are_refused_before_unpacking(pilot: Pilot, bad: str) -> None:
    url, digest = make_tarball(pilot.root / "condor.tar.gz", {**RELEASE, bad: b"owned"})
    report = assert_failed(pilot.run(*tarball_args(url, digest)), "install", "escape", bad)
    assert report.condor_source == ""
    assert not (pilot.work / "condor-release").exists()
    assert not (pilot.work / "evil").exists() and not (pilot.root / "evil").exists()


def test_tarball_without_condor_master_fails_install(pilot: Pilot) -> None:
    url, digest = make_tarball(pilot.root / "condor.tar.gz", {"condor/bin/condor_status": b"x"})
    assert_failed(pilot.run(*tarball_args(url, digest)), "install", "no sbin/condor_master")


def test_tarball_with_two_releases_fails_install(pilot: Pilot) -> None:
    url, digest = make_tarball(
        pilot.root / "condor.tar.gz", {"a/sbin/condor_master": MASTER, "b/sbin/condor_master": MASTER}
    )
    assert_failed(pilot.run(*tarball_args(url, digest)), "install", "2 directories")


def test_release_two_directories_down_is_not_searched(pilot: Pilot) -> None:
    url, digest = make_tarball(pilot.root / "condor.tar.gz", {"a/b/sbin/condor_master": MASTER})
    assert_failed(pilot.run(*tarball_args(url, digest)), "install", "no sbin/condor_master")


def test_a_file_that_is_not_a_tarball_fails_install(pilot: Pilot) -> None:
    junk = pilot.root / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b this is no gzip stream")
    run = pilot.run(*tarball_args(f"file://{junk}", sha256(junk.read_bytes())))
    assert_failed(run, "install", "cannot list the condor tarball")


def test_condor_dir_wins_over_the_tarball_which_is_not_even_fetched(pilot: Pilot) -> None:
    condor = fake_condor(pilot.root, "#!/bin/sh\nexit 0\n")
    run = pilot.run("--condor-dir", str(condor), *tarball_args(f"file://{pilot.root}/nowhere.tgz", "e" * 64))
    assert run.report.ok and run.report.condor_source == "condor-dir", run.report.reason
    assert f"RELEASE_DIR = {condor}" in run.config.splitlines()


def test_tarball_wins_over_condor_master_on_path(pilot: Pilot) -> None:
    on_path = fake_condor(pilot.root, "#!/bin/sh\nexit 0\n")
    url, digest = make_tarball(pilot.root / "condor.tar.gz", RELEASE)
    run = pilot.run(*tarball_args(url, digest), env={"PATH": f"{on_path}/sbin:{os.environ['PATH']}"})
    assert run.report.condor_source == "tarball"
    assert f"RELEASE_DIR = {pilot.work}/condor-release/condor-24.0.1-x86_64" in run.config.splitlines()


def test_install_comes_after_validation(pilot: Pilot) -> None:
    # A node that fails its checks does not spend time unpacking condor.
    pilot.add("check.sh", "#!/bin/sh\nexit 1\n", "validate-entry")
    url, digest = make_tarball(pilot.root / "condor.tar.gz", RELEASE)
    assert_failed(pilot.run(*tarball_args(url, digest)), "validate")
    assert (pilot.work / "condor-tarball").is_file()  # fetched and verified
    assert not (pilot.work / "condor-release").exists()


def test_install_comes_before_lifetime(pilot: Pilot) -> None:
    pilot.add("check.sh", OK_SCRIPT, "validate-entry")
    url, digest = make_tarball(pilot.root / "condor.tar.gz", {"x": b"no condor here"})
    report = assert_failed(pilot.run(*tarball_args(url, digest)), "install")
    assert report.validations[0].ok and report.die_time is None


def test_a_symlink_cannot_carry_members_out_of_the_release_dir(pilot: Pilot) -> None:
    # Names alone pass the check; tar itself refuses to write through the link.
    outside = pilot.root / "outside"
    outside.mkdir()
    tarball = pilot.root / "condor.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        link = tarfile.TarInfo("condor/lib")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        for name, content in {"condor/lib/pwned": b"x", "condor/sbin/condor_master": MASTER}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            tar.addfile(info, io.BytesIO(content))
    run = pilot.run(*tarball_args(f"file://{tarball}", sha256(tarball.read_bytes())))
    assert_failed(run, "install", "cannot unpack the condor tarball")
    assert list(outside.iterdir()) == []

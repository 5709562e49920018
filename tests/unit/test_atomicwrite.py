"""The one atomic writer: whole files, the asked-for mode from the start, the old file kept on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from updraft import atomicwrite
from updraft.atomicwrite import write_atomically
from updraft.secretfiles import write_private


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("data", "expected"), [(b"\x00bytes\xff", b"\x00bytes\xff"), ("t\u00e9xt\n", "t\u00e9xt\n".encode())]
)
def test_bytes_and_text_are_written_whole(tmp_path: Path, data: bytes | str, expected: bytes) -> None:
    target = tmp_path / "deep" / "er" / "file"
    write_atomically(target, data)
    assert target.read_bytes() == expected
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640, 0o400])
def test_the_file_gets_the_asked_for_mode_whatever_the_umask(tmp_path: Path, mode: int) -> None:
    old_umask = os.umask(0o077)
    try:
        write_atomically(tmp_path / "f", "x", mode)
    finally:
        os.umask(old_umask)
    assert mode_of(tmp_path / "f") == mode


def test_the_default_mode_is_readable_by_all(tmp_path: Path) -> None:
    write_atomically(tmp_path / "f", "x", sync=False)
    assert mode_of(tmp_path / "f") == atomicwrite.PUBLIC_MODE == 0o644


def test_a_rewrite_replaces_the_content_and_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomically(target, "old", 0o644)
    write_atomically(target, "new", 0o600)
    assert (target.read_text(), mode_of(target)) == ("new", 0o600)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    write_atomically(target, "old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    write_atomically(target, "old")

    def refuse(src: str, dst: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        write_atomically(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_the_mode_is_set_before_the_first_byte_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret must never sit in a file others can read, not even for a moment."""
    seen: list[int] = []
    real_fsync = os.fsync

    def look(fd: int) -> None:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", look)
    write_atomically(tmp_path / "secret", b"token", 0o600)
    assert seen == [0o600]


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "f").symlink_to(victim)
    write_atomically(tmp_path / "f", "new")
    assert victim.read_text() == "keep"
    assert not (tmp_path / "f").is_symlink() and (tmp_path / "f").read_text() == "new"


def test_a_private_file_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    write_private(tmp_path / "keys" / "k", b"secret")
    assert (mode_of(tmp_path / "keys"), mode_of(tmp_path / "keys" / "k")) == (0o700, 0o600)

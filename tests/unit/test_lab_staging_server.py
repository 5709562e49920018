"""The lab's staging web server answers with regular files under its folder, and refuses the rest."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from updraft.lab.control import render_configs, staging_server_source
from updraft.lab.staging_server import Refused, StagingServer, path_parts
from updraft.lab.topology import build_topology

SECRET = b"outside the staging folder: never served\n"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A staging folder with a release, links planted in it, and a secret beside it; the server on a free port."""
    root = tmp_path / "www"
    release = root / "frontend" / "main" / "0123456789abcdef"
    release.mkdir(parents=True)
    (release / "manifest").write_bytes(b"# manifest\n")
    (release / "pool.config").write_bytes(b"TRUST_DOMAIN = lab\n")
    (tmp_path / "secret").write_bytes(SECRET)
    (release / "link-to-secret").symlink_to(tmp_path / "secret")
    (release / "link-inside").symlink_to(release / "manifest")
    (root / "frontend" / "linked-folder").symlink_to(tmp_path)
    (root / "frontend" / "main" / ".0123.42.tmp").mkdir()
    (root / "frontend" / "main" / ".0123.42.tmp" / "manifest").write_bytes(b"half written\n")
    os.mkfifo(release / "fifo")
    server = StagingServer(("127.0.0.1", 0), str(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_regular_file_of_a_release_is_served_whole(served) -> None:
    _, port = served
    assert get(port, "/frontend/main/0123456789abcdef/pool.config") == (200, b"TRUST_DOMAIN = lab\n")
    assert get(port, "/frontend/main/0123456789abcdef/manifest?cache=no") == (200, b"# manifest\n")


def test_head_answers_without_a_body(served) -> None:
    _, port = served
    assert get(port, "/frontend/main/0123456789abcdef/manifest", "HEAD") == (200, b"")


@pytest.mark.parametrize(
    "path",
    [
        "/frontend/main/0123456789abcdef/link-to-secret",
        "/frontend/main/0123456789abcdef/link-inside",
        "/frontend/linked-folder/secret",
    ],
    ids=["symlink to a file outside", "symlink to a file inside", "through a symlinked folder"],
)
def test_a_symlink_is_never_followed_wherever_it_points(served, path: str) -> None:
    status, body = get(served[1], path)
    assert status == 404 and SECRET not in body and b"# manifest" not in body


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/../secret", 400),
        ("/frontend/../../secret", 400),
        ("/frontend/%2e%2e/%2e%2e/secret", 400),
        ("/frontend/main%2f..%2f..%2f..%2fsecret", 400),
        ("/frontend/main/0123456789abcdef/manifest%00", 400),
        ("/frontend\\..\\..\\secret", 400),
        ("//secret", 404),  # http.server makes it /secret, which is not there
        ("/frontend/main/", 400),
        ("/", 400),
        ("/frontend/main/0123456789abcdef", 404),
        ("/frontend/main/0123456789abcdef/fifo", 404),
        ("/frontend/main/.0123.42.tmp/manifest", 404),
        ("/frontend/main/0123456789abcdef/missing", 404),
        ("/frontend/main/%ff", 400),
    ],
)
def test_anything_but_a_regular_file_under_the_root_is_refused(served, path: str, status: int) -> None:
    answered, body = get(served[1], path)
    assert answered == status and SECRET not in body


def test_only_get_and_head_are_answered(served) -> None:
    status, _ = get(served[1], "/frontend/main/0123456789abcdef/manifest", "PUT")
    assert status == 501


@pytest.mark.parametrize("path", ["/a/../b", "/a/./b", "/a//b", "//b", "relative", "/a/%2e%2e", "/a/b%5c..%5cc"])
def test_path_parts_refuses_every_way_out(path: str) -> None:
    with pytest.raises(Refused) as refused:
        path_parts(path)
    assert refused.value.status == 400


def test_path_parts_decodes_a_plain_path() -> None:
    assert path_parts("/factory/site1/0123/check%5Fworker.sh?x=1") == ["factory", "site1", "0123", "check_worker.sh"]


def test_the_lab_runs_this_server_for_staging_not_the_standard_librarys(tmp_path: Path) -> None:
    topology = build_topology(tmp_path, base_port=31000)
    configs = render_configs(topology)
    factory = configs[topology.instance_dir(topology.factory) / "condor_config"]
    assert (
        f"STAGING_WEB_ARGS = {topology.staging_server} --bind 127.0.0.1 --directory {topology.staging_dir}" in factory
    )
    assert "http.server" not in factory
    assert configs[topology.staging_server] == staging_server_source()
    assert "O_NOFOLLOW" in configs[topology.staging_server]

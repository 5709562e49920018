"""The lab's staging web server: regular files under one folder, and nothing else.

Pilots fetch their manifests and files over HTTP from the lab's factory
host. `python -m http.server` follows symlinks, so a link planted under the
folder served whatever it pointed at. This server opens every path one
component at a time below the folder it serves, never following a symlink
(``O_NOFOLLOW``, relative to the folder's descriptor), and answers only
with a regular file: a symlink, a folder, a device, a hidden name (``.``
first: a release being written) or a path that tries to climb out
(``..``, an encoded slash or NUL, a backslash) is refused.

The lab's master runs this file with the root's own Python (the chroot
runtime has no Updraft installed), so it uses the standard library alone.
"""

from __future__ import annotations

import argparse
import errno
import http.server
import os
import stat
import sys
from urllib.parse import unquote

CHUNK = 64 * 1024
NOT_FOUND = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EISDIR)
"""What opening a path may fail with when it is missing or not allowed: all answered 404."""


class Refused(Exception):
    """A request path no file under the root can answer; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def path_parts(raw_path: str) -> list[str]:
    """The components of a request path below the root; Refused (400) for any that could leave it."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]  # not urlsplit: "//x" would become a host
    if not path.startswith("/"):
        raise Refused(400, "the path must start with /")
    parts = path[1:].split("/")
    decoded = []
    for part in parts:
        name = unquote(part, errors="strict")
        if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
            raise Refused(400, f"path component {part!r} is not allowed")
        if name.startswith("."):
            raise Refused(404, "hidden names are not served")
        decoded.append(name)
    return decoded


def open_regular_file(root_fd: int, parts: list[str]) -> int:
    """A descriptor of the regular file at `parts` below the root, opened without following any symlink."""
    fd = os.dup(root_fd)
    try:
        for folder in parts[:-1]:
            next_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError as err:
        if err.errno in NOT_FOUND:
            raise Refused(404, "no regular file there") from err
        raise
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise Refused(404, "not a regular file")
    return file_fd


class StagingHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of regular files below `server.root_fd`; any other method is refused."""

    server_version = "UpdraftLabStaging/1"

    def do_GET(self) -> None:  # the name http.server dispatches to
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        try:
            file_fd = open_regular_file(self.server.root_fd, path_parts(self.path))  # type: ignore[attr-defined]
        except Refused as refused:
            self.send_error(refused.status, refused.reason)
            return
        except UnicodeDecodeError:
            self.send_error(400, "the path is not UTF-8")
            return
        with os.fdopen(file_fd, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if send_body:
                while chunk := source.read(CHUNK):
                    self.wfile.write(chunk)


class StagingServer(http.server.ThreadingHTTPServer):
    """Serves the folder it was opened on; the descriptor pins it even if the path is swapped later."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: str) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        super().__init__(address, StagingHandler)

    def server_close(self) -> None:
        super().server_close()
        os.close(self.root_fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--directory", required=True)
    parser.add_argument("port", type=int)
    args = parser.parse_args(argv)
    server = StagingServer((args.bind, args.port), args.directory)
    print(f"serving regular files of {args.directory} on {args.bind}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

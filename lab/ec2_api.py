"""The lab's EC2 API endpoint: moto's server, presenting itself the way AWS does.

moto (``python3-moto`` in the lab's root) implements the EC2 query API:
RunInstances, DescribeInstances, DescribeInstanceAttribute, CreateTags,
TerminateInstances... It boots nothing, and accepts any credentials. The
lab's master runs this file with the root's own Python, on loopback.

Two things differ between moto's own ``moto_server`` and AWS in ways that
HTCondor's ``ec2_gahp`` notices, and this launcher mends both on the wire:

- **Server type.** The gahp sends DescribeKeyPairs and calls the server
  "Amazon" only if the answer has a ``Server: AmazonEC2`` header and an
  XML declaration with ``encoding="UTF-8"``. Anything else is "OpenStack"
  or "Unknown", for which the grid manager refuses an entry's existing key
  pair ("Can't use existing ssh keypair for server type ...") and cannot
  use client tokens for idempotent submission. So every answer here gets
  AWS's header and declaration.
- **List indices.** The gahp numbers query-list members from 0
  (``SecurityGroup.0=default``, ``Tag.0.Key=...``), which AWS accepts;
  moto reads members from 1 and silently drops a list that starts at 0,
  so instances came up without their security groups and tags. Lists
  that start at 0 are renumbered from 1 before moto reads the request.

The region is taken from the request's SigV4 credential scope, which the
gahp derives from the endpoint's host name (``ec2.<region>.<anything>``);
the lab's endpoint is ``http://ec2.us-east-1.localhost:<port>/`` (names
under ``localhost`` are loopback, RFC 6761).
"""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
SERVER = "AmazonEC2"
_MEMBER = re.compile(r"^(?P<family>(?:[A-Za-z]+\.)*?[A-Za-z]+)\.(?P<index>\d+)(?P<rest>(?:\..*)?)$")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]


def one_based(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query pairs with every list family that starts at index 0 renumbered from 1 (see the module doc)."""
    zero_based = set()
    for name, _ in pairs:
        match = _MEMBER.match(name)
        if match and match["index"] == "0":
            zero_based.add(match["family"])
    renamed = []
    for name, value in pairs:
        match = _MEMBER.match(name)
        if match and match["family"] in zero_based:
            name = f"{match['family']}.{int(match['index']) + 1}{match['rest']}"
        renamed.append((name, value))
    return renamed


def _mend_request(environ: Environ) -> None:
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length).decode()
    mended = urlencode(one_based(parse_qsl(body, keep_blank_values=True))).encode()
    environ["wsgi.input"] = io.BytesIO(mended)
    environ["CONTENT_LENGTH"] = str(len(mended))


def as_aws(inner: App) -> App:
    """`inner` (moto's dispatcher) answering as AWS does: declared XML, no header of moto's own naming it."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        _mend_request(environ)
        answer: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer["status"], answer["headers"] = status, headers
            return lambda _data: None

        body = b"".join(inner(environ, keep))
        if body.startswith(b"<") and not body.startswith(b"<?xml"):
            body = XML_DECLARATION + body
        headers = [(k, v) for k, v in answer["headers"] if k.lower() not in ("server", "date", "content-length")]
        start_response(answer["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return app


def main() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, run_simple

    class AwsHandler(WSGIRequestHandler):  # type: ignore[misc]  # werkzeug is typed, but only in the root
        def version_string(self) -> str:
            return SERVER

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = as_aws(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, request_handler=AwsHandler)


if __name__ == "__main__":
    main()

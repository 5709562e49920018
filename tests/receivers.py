"""Real receivers for the notifier tests (unit and lab): an SMTP server with STARTTLS and login, webhook HTTP
servers that record what is posted, and a server that accepts and then only trickles."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, made here: the client trusts exactly this one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: bytes | None
    tls: bool


@dataclass
class SmtpInbox:
    """An aiosmtpd handler and authenticator that keeps every mail and every login attempt."""

    user: str
    password: str
    mails: list[Received] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        auth: Any = session.auth_data  # typed None by aiosmtpd; it is what the authenticator returned
        login = auth.login if isinstance(auth, LoginPassword) else None
        content = envelope.original_content or b""
        tls = server.transport is not None and server.transport.get_extra_info("sslcontext") is not None
        self.mails.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content, login, tls))
        return "250 OK stored"

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user.encode()
            and auth_data.password == self.password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def smtp_server(inbox: SmtpInbox, cert: Path, key: Path, exclude: list[str]) -> Controller:
    """A running SMTP server that refuses mail before STARTTLS and logins outside TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=inbox,
        auth_require_tls=True,
        auth_required=True,
        auth_exclude_mechanism=exclude,
    )
    controller.start()
    return controller


@dataclass
class Post:
    path: str
    content_type: str
    body: dict[str, Any]


class WebhookServer:
    """An HTTP server in a thread that records JSON posts and answers `status` (and `answer`)."""

    def __init__(self, status: int = 200, answer: bytes = b"ok") -> None:
        self.posts: list[Post] = []
        self.status = status
        self.answer = answer
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                server.posts.append(Post(self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.answer)))
                self.end_headers()
                self.wfile.write(server.answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Trickler:
    """Accepts every connection and sends `first` then `line` every 0.2 s, never finishing an answer:
    each read gets data before any socket timeout, so only an overall deadline ends the client's wait."""

    def __init__(self, first: bytes, line: bytes) -> None:
        self.first, self.line = first, line
        self.stopping = threading.Event()
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(self.first)
                while not self.stopping.is_set():
                    time.sleep(0.2)
                    conn.sendall(self.line)
            except OSError:
                return

    def stop(self) -> None:
        self.stopping.set()
        self.acceptor.join()
        self.listener.close()

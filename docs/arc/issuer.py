"""A lab token issuer for the ARC CE attempt (docs/arc.md); lab only, never a real issuer.

ARC 7 checks a bearer token by fetching its issuer's OIDC discovery document and
JWKS over HTTPS, so a token with a made-up issuer is useless unless something
answers at that URL. This serves both on 127.0.0.1 with the host certificate
ARC already has (signed by the lab test CA that ARC trusts), and mints tokens
signed by the same key. It runs inside the lab root with Debian's python3,
python3-jwt and python3-cryptography; the signing key lies unencrypted beside it.

    python3 issuer.py serve
    python3 issuer.py mint SUBJECT AUDIENCE "SCOPES" [LIFETIME_SECONDS]
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import sys
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path("/srv/issuer")
PORT = 30976
ISSUER = f"https://localhost:{PORT}"
KEY_FILE = HERE / "signing.pem"
KEY_ID = "lab-1"
HOST_CERT = "/etc/grid-security/localhost-hostcert.pem"
HOST_KEY = "/etc/grid-security/localhost-hostkey.pem"


def signing_key() -> rsa.RSAPrivateKey:
    """The issuer's RSA key, made on first use so that tokens and JWKS always agree."""
    if not KEY_FILE.exists():
        fresh = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = fresh.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        KEY_FILE.write_bytes(pem)
        KEY_FILE.chmod(0o600)
    key = serialization.load_pem_private_key(KEY_FILE.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def b64url_int(number: int) -> str:
    """A JWK integer: big-endian bytes, base64url without padding."""
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwks() -> dict[str, object]:
    """The public half of the signing key as a JWK set."""
    public = signing_key().public_key().public_numbers()
    jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KEY_ID}
    jwk |= {"n": b64url_int(public.n), "e": b64url_int(public.e)}
    return {"keys": [jwk]}


def mint(subject: str, audience: str, scope: str, lifetime: int = 3600) -> str:
    """A WLCG-style access token; a negative lifetime makes an already expired one (for negative tests)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "aud": audience,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": f"{subject}-{now}",
        "wlcg.ver": "1.0",
    }
    return jwt.encode(claims, signing_key(), algorithm="RS256", headers={"kid": KEY_ID, "typ": "JWT"})


class DiscoveryHandler(http.server.BaseHTTPRequestHandler):
    """Answers the two documents a relying party fetches; everything else is 404."""

    def do_GET(self) -> None:
        if self.path == "/.well-known/openid-configuration":
            body: dict[str, object] = {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"}
        elif self.path == "/jwks":
            body = jwks()
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve() -> None:
    """Serve discovery and JWKS over HTTPS on loopback until killed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(HOST_CERT, HOST_KEY)
    server = http.server.HTTPServer(("127.0.0.1", PORT), DiscoveryHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def main(argv: list[str]) -> None:
    if argv[1:2] == ["serve"]:
        serve()
    elif argv[1:2] == ["mint"] and len(argv) in (5, 6):
        lifetime = int(argv[5]) if len(argv) == 6 else 3600
        print(mint(argv[2], argv[3], argv[4], lifetime))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)

"""A registry behind the distribution token flow, as Docker Hub and most registries run it.

`token_registry` starts a tiny token server (http.server in a thread, so it serves whatever event
loop a test runs) that signs ES256 JWTs with a self-signed certificate, and a docker-registry with
`auth.token` trusting that certificate. Basic credentials `puller`/`t0ken-pw` get pull and push;
anonymous requests get pull only for repositories under `public/`. Tests push with `mint()`.

    from tests.integration.token_auth import token_registry  # noqa: F401
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.integration.registry import Registry, running_registry

SERVICE = "nodeagent-test-registry"
ISSUER = "nodeagent-test-issuer"
USERNAME, PASSWORD = "puller", "t0ken-pw"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenIssuer:
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    requests: list[dict[str, str]] = field(default_factory=list)  # the query of every token request

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                            .sign(self.key, hashes.SHA256()))

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def mint(self, subject: str, access: list[dict[str, object]], *, seconds: int = 300) -> str:
        """A JWT as the registry expects it: ES256, the certificate in x5c, the access it grants."""
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + seconds, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def grant(self, query: dict[str, str], authorization: str | None) -> tuple[int, dict[str, object]]:
        self.requests.append(query)
        user = None
        if authorization:
            expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
            if authorization != expected:
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]}
            user = USERNAME
        access: list[dict[str, object]] = []
        for scope in query.get("scope", "").split():
            kind, name, actions = scope.split(":")
            allowed = set(actions.split(",")) if user else {"pull"} if name.startswith("public/") else set()
            access.append({"type": kind, "name": name, "actions": sorted(allowed & set(actions.split(",")))})
        token = self.mint(user or "", access)
        return 200, {"token": token, "access_token": token, "expires_in": 300}


@dataclass
class TokenRegistry:
    registry: Registry
    issuer: TokenIssuer

    def push_authorization(self, repository: str) -> str:
        access: list[dict[str, object]] = [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]
        return "Bearer " + self.issuer.mint(USERNAME, access)


def _serve(issuer: TokenIssuer) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            status, body = issuer.grant(query, self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="token-server", daemon=True).start()
    return server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    directory = Path(tmp_path_factory.mktemp("token-registry"))
    issuer = TokenIssuer()
    bundle = directory / "issuer.pem"
    bundle.write_bytes(issuer.certificate_pem())
    server = _serve(issuer)
    try:
        realm = f"http://127.0.0.1:{server.server_address[1]}/token"
        auth: dict[str, object] = {"token": {"realm": realm, "service": SERVICE, "issuer": ISSUER,
                                             "rootcertbundle": str(bundle)}}
        with running_registry(directory / "registry", auth=auth) as running:
            yield TokenRegistry(running, issuer)
    finally:
        server.shutdown()
        server.server_close()

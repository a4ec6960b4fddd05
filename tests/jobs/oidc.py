"""A stand-in for Google's OIDC token issuer: a signing key, its certificate, and tokens."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

SERVICE_ACCOUNT = "job-tasks@demo-model-serving.iam.gserviceaccount.com"


class Issuer:
    """Signs ID tokens the way Google signs Cloud Tasks' OIDC tokens (RS256, with a kid)."""

    def __init__(self, kid: str = "test-key-1") -> None:
        self.kid = kid
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._signer = crypt.RSASigner.from_string(pem, key_id=kid)

    def certs(self) -> dict[str, str]:
        """The document Google serves at its certs URL: kid -> PEM certificate."""
        return {self.kid: self.certificate_pem}

    def token(self, audience: str, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "sub": "112233445566778899",
            "email": SERVICE_ACCOUNT,
            "email_verified": True,
            "iat": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return jwt.encode(self._signer, {k: v for k, v in claims.items() if v is not None}).decode()


class CertificateServer(http.server.ThreadingHTTPServer):
    """Serves an `Issuer`'s certificates at any path on 127.0.0.1, as Google does at its certs URL."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        super().__init__(("127.0.0.1", 0), _CertificateHandler)
        self.url = f"http://127.0.0.1:{self.server_port}/certs"

    def __enter__(self) -> CertificateServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


class _CertificateHandler(http.server.BaseHTTPRequestHandler):
    server: CertificateServer

    def do_GET(self) -> None:
        body = json.dumps(self.server.issuer.certs()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

"""The simulated Microsoft identity platform: client-credentials grant and bearer-token checks.

Microsoft Learn "Microsoft identity platform and the OAuth 2.0 client credentials flow"
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow): a client
authenticates with a secret or a signed JWT assertion (certificate) and receives a bearer token.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class AuthError(Exception):
    """An OAuth error to answer with 400/401 and an AADSTS-like description."""

    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(slots=True)
class Client:
    client_id: str
    secret: str | None = None
    certificate: x509.Certificate | None = None


@dataclass(slots=True)
class AuthState:
    tenant_id: str
    token_lifetime: int = 3600
    clients: dict[str, Client] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch)
    reject_all_tokens: bool = False  # every bearer answered 401, even fresh ones
    issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_client(self, client_id: str, *, secret: str | None = None,
                   certificate_pem: bytes | None = None) -> None:  # fmt: skip
        cert = x509.load_pem_x509_certificate(certificate_pem) if certificate_pem else None
        self.clients[client_id] = Client(client_id, secret, cert)

    def revoke_tokens(self) -> None:
        """Forget every issued token: the next Graph call gets 401 until the client refreshes."""
        with self.lock:
            self.tokens.clear()

    def issue(self, form: dict[str, str], token_url: str) -> dict[str, object]:
        if form.get("grant_type") != "client_credentials":
            raise AuthError("unsupported_grant_type", "AADSTS70003: grant type not supported", 400)
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            raise AuthError(
                "unauthorized_client", "AADSTS700016: Application not found in the directory.", 400
            )
        if "client_secret" in form:
            if client.secret is None or not hmac.compare_digest(
                form["client_secret"].encode(), client.secret.encode()
            ):
                raise AuthError("invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif form.get("client_assertion_type") == JWT_BEARER:
            _verify_assertion(client, form.get("client_assertion", ""), token_url)
        else:
            raise AuthError("invalid_client", "AADSTS7000216: client credentials are missing.")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.time() + self.token_lifetime
            self.issued += 1
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }

    def is_valid(self, authorization: str | None) -> bool:
        if self.reject_all_tokens or not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self.lock:
            expiry = self.tokens.get(token)
        return expiry is not None and expiry > time.time()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _verify_assertion(client: Client, assertion: str, token_url: str) -> None:
    """RS256/PS256 JWT signed by the registered certificate, `aud` = the token endpoint."""
    bad = AuthError("invalid_client", "AADSTS700027: Client assertion failed signature validation.")
    if client.certificate is None:
        raise bad
    try:
        header_b64, payload_b64, signature_b64 = assertion.split(".")
        header = orjson.loads(_b64decode(header_b64))
        claims = orjson.loads(_b64decode(payload_b64))
        signature = _b64decode(signature_b64)
    except ValueError as exc:
        raise bad from exc
    key = client.certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise bad
    signed = f"{header_b64}.{payload_b64}".encode()
    pad: padding.AsymmetricPadding
    if header.get("alg") == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    elif header.get("alg") == "RS256":
        pad = padding.PKCS1v15()
    else:
        raise bad
    try:
        key.verify(signature, signed, pad, hashes.SHA256())
    except InvalidSignature as exc:
        raise bad from exc
    now = time.time()
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise bad
    if claims.get("aud") != token_url or not claims.get("nbf", 0) - 300 <= now < claims.get(
        "exp", 0
    ):
        raise AuthError("invalid_client", "AADSTS700024: Client assertion is not within its valid "
                        "time range or has the wrong audience.")  # fmt: skip

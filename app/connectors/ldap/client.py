"""Connections to Active Directory domain controllers, with failover and strict TLS.

ldap3 is blocking: every function here is synchronous and the caller runs it in
`asyncio.to_thread`. Errors come out as `LdapTemporaryError` (try again later, maybe another DC)
or `LdapPermanentError` (configuration or credentials are wrong; retrying will not help).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as lx
from pydantic import SecretStr

from app.connectors.ldap.config import LdapSettings

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}


class LdapError(Exception):
    """Base of the errors this package raises; messages never contain a password."""


class LdapTemporaryError(LdapError):
    """The DC is unreachable, timed out, busy or dropped the connection: retry later."""


class LdapPermanentError(LdapError):
    """Bad credentials, missing rights, TLS validation failure or bad settings: stop and report."""


@dataclass(frozen=True, slots=True)
class DcEndpoint:
    url: str
    host: str
    port: int
    use_ssl: bool


@dataclass(slots=True)
class LdapSession:
    """A bound connection and the DC URL it reached (USN cursors are per DC)."""

    connection: ldap3.Connection
    url: str

    def close(self) -> None:
        # The DC may already have gone away; there is nothing left to release then.
        with contextlib.suppress(lx.LDAPException, OSError):
            self.connection.unbind()

    def __enter__(self) -> LdapSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_url(url: str) -> DcEndpoint:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise LdapPermanentError(f"invalid DC URL {url!r}: expected ldaps://host[:port] or ldap://")
    port = parts.port or DEFAULT_PORTS[scheme]
    return DcEndpoint(url=url, host=parts.hostname, port=port, use_ssl=scheme == "ldaps")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class StrictTls(ldap3.Tls):  # type: ignore[misc]  # ldap3 is untyped: Tls is Any
    """TLS with the standard library's host name check (SAN DNS and IP entries).

    ldap3 2.9.1 checks names itself through the deprecated `ssl.match_hostname`; here the
    handshake verifies `server_name` (the override) or else the URL host, and sends it as SNI.
    """

    def __init__(self, ca_file: str | None, server_name: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self.server_name = server_name

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(cafile=self.ca_certs_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        connection.socket = context.wrap_socket(
            connection.socket,
            server_hostname=self.server_name or connection.server.host,
            do_handshake_on_connect=True,
        )


def _tls(settings: LdapSettings) -> ldap3.Tls:
    return StrictTls(settings.ca_file, settings.tls_server_name)


def _server(settings: LdapSettings, endpoint: DcEndpoint) -> ldap3.Server:
    if not endpoint.use_ssl and not settings.start_tls and not settings.allow_plaintext:
        raise LdapPermanentError(
            f"refusing plain LDAP to {endpoint.url}: use ldaps://, enable StartTLS, "
            "or set allow_plaintext explicitly"
        )
    return ldap3.Server(
        endpoint.host,
        port=endpoint.port,
        use_ssl=endpoint.use_ssl,
        tls=_tls(settings),
        get_info=ldap3.NONE,
        connect_timeout=settings.connect_timeout,
    )


def _tls_error(endpoint: DcEndpoint, server_name: str | None, exc: Exception) -> LdapError:
    text = str(exc)
    if "mismatch" in text or "doesn't match" in text:
        name = server_name or endpoint.host
        hint = (
            f"{name} is an IP address; LDAPS only works when the certificate names the "
            "server: put the DC's FQDN in the URL"
            if _is_ip(name)
            else "put the DC's FQDN as named by its certificate in the URL"
        )
        return LdapPermanentError(
            f"TLS certificate of {endpoint.url} does not name {name}: {hint}, "
            "or set tls_server_name to the name in the certificate"
        )
    return LdapPermanentError(
        f"TLS certificate of {endpoint.url} could not be verified ({_short(text)}): "
        "set ca_file to the CA that issued the DC's certificate"
    )


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _is_tls_failure(exc: Exception) -> bool:
    # ldap3 re-raises socket errors as a class that also inherits the original exception type.
    return isinstance(exc, ssl.SSLCertVerificationError | lx.LDAPCertificateError) or (
        "CERTIFICATE_VERIFY_FAILED" in str(exc)
    )


def translate(exc: Exception, url: str, tls_server_name: str | None = None) -> LdapError:
    """Map an ldap3 exception to temporary or permanent, with a message fit for status pages."""
    endpoint = parse_url(url)
    if isinstance(exc, LdapError):
        return exc
    if isinstance(exc, lx.LDAPSocketOpenError | lx.LDAPStartTLSError) and _is_tls_failure(exc):
        return _tls_error(endpoint, tls_server_name, exc)
    if isinstance(exc, lx.LDAPInvalidCredentialsResult):
        return LdapPermanentError(f"bind to {url} rejected: invalid credentials")
    if isinstance(exc, lx.LDAPStrongerAuthRequiredResult):
        return LdapPermanentError(
            f"{url} requires a protected connection for simple binds: use ldaps:// or StartTLS"
        )
    if isinstance(exc, lx.LDAPInsufficientAccessRightsResult):
        return LdapPermanentError(f"the bind account lacks rights on {url}: {exc}")
    if isinstance(
        exc,
        lx.LDAPCommunicationError
        | lx.LDAPBusyResult
        | lx.LDAPUnavailableResult
        | lx.LDAPTimeLimitExceededResult
        | lx.LDAPAdminLimitExceededResult
        | lx.LDAPResponseTimeoutError
        | lx.LDAPSessionTerminatedByServerError
        | lx.LDAPStartTLSError
        | OSError,
    ):
        return LdapTemporaryError(f"{url} unavailable: {_short(str(exc))}")
    return LdapPermanentError(f"LDAP error from {url}: {_short(str(exc))}")


def open_connection(
    settings: LdapSettings,
    endpoint: DcEndpoint,
    user: str | None,
    password: SecretStr | None,
    *,
    keep_bind_errors: bool = False,
) -> ldap3.Connection:
    """Connect, StartTLS when asked, and simple-bind; raises LdapError subclasses only.

    With `keep_bind_errors`, ldap3's LDAPInvalidCredentialsResult passes through unchanged so
    bind-through checks can read AD's reason code.
    """
    server = _server(settings, endpoint)
    connection = ldap3.Connection(
        server,
        user=user,
        password=password.get_secret_value() if password is not None else None,
        authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
        raise_exceptions=True,
        receive_timeout=settings.receive_timeout,
        auto_referrals=False,
        # Ranges are retrieved explicitly by the reader. With auto_range=False ldap3 2.9.1 raises
        # KeyError on ranged attributes unless empty attributes are off (strategy/base.py).
        auto_range=False,
        return_empty_attributes=False,
        read_only=True,
    )
    try:
        connection.open()
        if not endpoint.use_ssl and settings.start_tls:
            connection.start_tls()
        connection.bind()
    except (lx.LDAPException, OSError) as exc:
        _unbind_quietly(connection)
        if keep_bind_errors and isinstance(exc, lx.LDAPInvalidCredentialsResult):
            raise
        raise translate(exc, endpoint.url, settings.tls_server_name) from None
    return connection


def _unbind_quietly(connection: ldap3.Connection) -> None:
    with contextlib.suppress(lx.LDAPException, OSError):
        connection.unbind()
    # ldap3 leaves the socket open when the TLS handshake of open() fails.
    sock = getattr(connection, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def connect(settings: LdapSettings, *, prefer_url: str | None = None) -> LdapSession:
    """Bind as the service account to the first DC that answers.

    Unreachable DCs are skipped; a permanent error (credentials, TLS name) stops at once so a
    misconfiguration is never hidden by a working second DC.
    """
    return connect_as(settings, settings.bind_dn, settings.bind_password, prefer_url=prefer_url)


def connect_as(
    settings: LdapSettings,
    user: str | None,
    password: SecretStr | None,
    *,
    prefer_url: str | None = None,
) -> LdapSession:
    urls = ordered_urls(settings.urls, prefer_url)
    if not urls:
        raise LdapPermanentError("no DC URL configured")
    failures: list[str] = []
    for url in urls:
        endpoint = parse_url(url)
        try:
            connection = open_connection(settings, endpoint, user, password)
        except LdapTemporaryError as exc:
            logger.warning("ldap dc unavailable, trying next: url=%s error=%s", url, exc)
            failures.append(str(exc))
            continue
        return LdapSession(connection=connection, url=url)
    raise LdapTemporaryError("no DC reachable: " + "; ".join(failures))


def ordered_urls(urls: Sequence[str], prefer_url: str | None) -> list[str]:
    if prefer_url and prefer_url in urls:
        return [prefer_url, *(u for u in urls if u != prefer_url)]
    return list(urls)

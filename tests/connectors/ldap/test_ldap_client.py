"""Connections to the real Samba DC: TLS name validation, StartTLS, plaintext policy, failover."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from app.connectors.ldap.client import (
    LdapPermanentError,
    LdapTemporaryError,
    connect,
    parse_url,
)
from app.connectors.ldap.reader import read_dc_state

pytestmark = pytest.mark.samba


def test_ldaps_validates_certificate_by_host_name(samba_dc) -> None:
    with connect(samba_dc.settings(urls=["ldaps://localhost"])) as session:
        assert read_dc_state(session).highest_usn > 0


def test_ldaps_by_ip_address_fails_and_explains_the_fix(samba_dc) -> None:
    with pytest.raises(LdapPermanentError) as excinfo:
        connect(samba_dc.settings(urls=["ldaps://127.0.0.1"]))
    message = str(excinfo.value)
    assert "127.0.0.1 is an IP address" in message
    assert "FQDN" in message
    assert "tls_server_name" in message
    assert "Passw0rd" not in message


def test_ldaps_by_ip_address_works_with_server_name_override(samba_dc) -> None:
    settings = samba_dc.settings(urls=["ldaps://127.0.0.1"], tls_server_name="dc1.example.test")
    with connect(settings) as session:
        assert session.url == "ldaps://127.0.0.1"


def test_ldaps_with_unknown_ca_fails_permanently(samba_dc) -> None:
    with pytest.raises(LdapPermanentError, match="ca_file"):
        connect(samba_dc.settings(ca_file=None))


def test_starttls_validates_certificate(samba_dc) -> None:
    with connect(samba_dc.settings(urls=["ldap://localhost"])) as session:
        assert session.connection.tls_started
    with pytest.raises(LdapPermanentError, match=r"does not name 127\.0\.0\.1"):
        connect(samba_dc.settings(urls=["ldap://127.0.0.1"]))


def test_plaintext_is_refused_unless_allowed(samba_dc) -> None:
    with pytest.raises(LdapPermanentError, match="allow_plaintext"):
        connect(samba_dc.settings(urls=["ldap://127.0.0.1"], start_tls=False))
    settings = samba_dc.settings(urls=["ldap://127.0.0.1"], start_tls=False, allow_plaintext=True)
    with connect(settings) as session:
        assert not session.connection.tls_started


def test_wrong_password_is_permanent_and_not_echoed(samba_dc) -> None:
    settings = samba_dc.settings(bind_password=SecretStr("WrongPassw0rd!"))
    with pytest.raises(LdapPermanentError, match="invalid credentials") as excinfo:
        connect(settings)
    assert "WrongPassw0rd" not in str(excinfo.value)


def test_bind_with_domain_backslash_user(samba_dc) -> None:
    with connect(samba_dc.settings(bind_dn="EXAMPLE\\Administrator")) as session:
        assert session.url == "ldaps://localhost"


def test_dead_dc_first_fails_over_to_second(samba_dc) -> None:
    settings = samba_dc.settings(urls=["ldaps://localhost:1", "ldaps://localhost"])
    with connect(settings) as session:
        assert session.url == "ldaps://localhost"


def test_preferred_dc_is_tried_first(samba_dc) -> None:
    settings = samba_dc.settings(urls=["ldaps://127.0.0.1", "ldaps://localhost"])
    with connect(settings, prefer_url="ldaps://localhost") as session:
        assert session.url == "ldaps://localhost"


def test_no_reachable_dc_is_temporary(samba_dc) -> None:
    settings = samba_dc.settings(urls=["ldaps://localhost:1", "ldap://localhost:2"])
    with pytest.raises(LdapTemporaryError, match="no DC reachable"):
        connect(settings)


def test_url_parsing_defaults_ports() -> None:
    assert parse_url("ldaps://dc1.corp.example").port == 636
    assert parse_url("ldap://dc1.corp.example").port == 389
    assert parse_url("ldaps://dc1.corp.example:3269").port == 3269
    with pytest.raises(LdapPermanentError):
        parse_url("http://dc1.corp.example")

"""A real Samba AD domain controller on loopback, provisioned and seeded once per test session.

`scripts/samba-dc.sh` provisions (cached template, ~7 s the first time) and starts the DC;
this module seeds it with ldap3 over LDAPS as Administrator. Samba cannot move LDAP off 389/636,
so sessions on one machine take turns through a file lock.

A pytest plugin (registered by `pytest_plugins` in tests/conftest.py), not a conftest, so the API
tests share the one session DC with the connector tests.
"""

from __future__ import annotations  # noqa: I001 (app.connectors.ldap must import ldap3 first)

import app.connectors.ldap  # noqa: F401 (mutes ldap3's import-time DeprecationWarning)
import fcntl
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
import pytest
from pydantic import SecretStr

from app.connectors.ldap.client import LdapSettings, StrictTls

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "samba-dc.sh"
# Samba cannot move LDAP off 389/636: one DC per machine, so test sessions take turns.
LOCK_FILE = Path("/tmp/roster-samba-dc.lock")
BASE_DN = "DC=example,DC=test"
OU = f"OU=Roster,{BASE_DN}"
BULK_OU = f"OU=Bulk,{OU}"
ADMIN_UPN = "Administrator@example.test"
ADMIN_PASSWORD = "Passw0rd!Admin"
USER_PASSWORD = "Passw0rd!User1"
BULK_USERS = 1600
FSP_DN = f"CN=S-1-5-11,CN=ForeignSecurityPrincipals,{BASE_DN}"
USER_CLASSES = ["top", "person", "organizationalPerson", "user"]
# groupType 2: global distribution group (no 0x80000000 security bit).
DISTRIBUTION_GLOBAL = "2"


def _password(value: str) -> bytes:
    return f'"{value}"'.encode("utf-16-le")


@dataclass
class SambaDC:
    """Handle on the running DC: settings factory, an admin connection and the seeded GUIDs."""

    directory: Path
    ca_file: str
    guids: dict[str, str] = field(default_factory=dict)
    bulk_guids: set[str] = field(default_factory=set)
    start_seconds: float = 0.0
    ou: str = OU
    user_password: str = USER_PASSWORD
    bulk_users: int = BULK_USERS

    def settings(self, **overrides: Any) -> LdapSettings:
        values: dict[str, Any] = {
            "urls": ["ldaps://localhost"],
            "bind_dn": ADMIN_UPN,
            "bind_password": SecretStr(ADMIN_PASSWORD),
            "base_dn": [OU],
            "ca_file": self.ca_file,
            "connect_timeout": 3,
            "receive_timeout": 30,
        }
        values.update(overrides)
        return LdapSettings(**values)

    def admin(self) -> ldap3.Connection:
        tls = StrictTls(self.ca_file, None)
        server = ldap3.Server("localhost", port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE)
        return ldap3.Connection(
            server, ADMIN_UPN, ADMIN_PASSWORD, auto_bind=True, raise_exceptions=True
        )

    def guid_of(self, conn: ldap3.Connection, dn: str) -> str:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
        return str(uuid.UUID(bytes_le=conn.response[0]["raw_attributes"]["objectGUID"][0]))

    def stop(self) -> None:
        _script("stop", str(self.directory))

    def start(self) -> None:
        _script("start", str(self.directory))


def _script(*args: str) -> None:
    subprocess.run([str(SCRIPT), *args], check=True, stdout=subprocess.DEVNULL)


def _require_samba() -> None:
    if shutil.which("samba") and shutil.which("samba-tool"):
        return
    reason = "Samba AD DC not installed: run `scripts/samba-dc.sh install` (needs root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _add_user(conn: ldap3.Connection, cn: str, attrs: dict[str, Any]) -> str:
    dn = f"CN={cn},{OU}"
    conn.add(dn, USER_CLASSES, {"sAMAccountName": cn, **attrs})
    return dn


def seed(dc: SambaDC) -> None:
    """The directory the reader tests expect; see test_ldap_reader.py for the assertions."""
    conn = dc.admin()
    conn.add(OU, "organizationalUnit")
    conn.add(BULK_OU, "organizationalUnit")
    dns = {
        "alice": _add_user(
            conn,
            "alice",
            {
                "userPrincipalName": "alice@example.test",
                "mail": "alice@example.test",
                "proxyAddresses": [
                    "SMTP:alice@example.test",
                    "smtp:a.smith@example.test",
                    "smtp:alice@alias.example.test",
                    "X500:/o=Example/ou=Users/cn=alice",
                    "SIP:alice@example.test",
                ],
                "displayName": "Alice Smith",
                "givenName": "Alice",
                "sn": "Smith",
                "department": "Sales",
                "title": "Manager",
                "company": "Example Ltd",
                "unicodePwd": _password(USER_PASSWORD),
                "userAccountControl": "512",
            },
        ),
        "bob": _add_user(
            conn,
            "bob",
            {
                "userPrincipalName": "bob@corp.example.test",
                "mail": "bob@example.test",
                "displayName": "Bob Jones",
                "unicodePwd": _password(USER_PASSWORD),
                "userAccountControl": "512",
            },
        ),
        "carol": _add_user(
            conn,
            "carol",
            {
                "userPrincipalName": "carol@example.test",
                "mail": "carol@example.test",
                "unicodePwd": _password(USER_PASSWORD),
                "userAccountControl": "514",
            },
        ),
        # A disabled account with a mailbox address: how a shared mailbox looks without Exchange.
        "shared": _add_user(
            conn,
            "shared",
            {
                "mail": "shared@example.test",
                "proxyAddresses": ["SMTP:shared@example.test", "smtp:info@example.test"],
                "displayName": "Shared Inbox",
                "userAccountControl": "514",
            },
        ),
    }
    dns["partner"] = f"CN=partner,{OU}"
    conn.add(
        dns["partner"],
        ["top", "person", "organizationalPerson", "contact"],
        {
            "mail": "partner@external.example",
            "proxyAddresses": ["SMTP:partner@external.example"],
            "displayName": "External Partner",
        },
    )
    for name, mail in (
        ("sales", "sales@example.test"),
        ("team-a", "team-a@example.test"),
        ("all-staff", "all-staff@example.test"),
    ):
        dns[name] = f"CN={name},{OU}"
        conn.add(
            dns[name],
            ["top", "group"],
            {
                "sAMAccountName": name,
                "groupType": DISTRIBUTION_GLOBAL,
                "mail": mail,
                "proxyAddresses": [f"SMTP:{mail}"],
            },
        )
    conn.modify(
        dns["sales"], {"proxyAddresses": [(ldap3.MODIFY_ADD, ["smtp:vertrieb@example.test"])]}
    )
    # Nested groups with a cycle (sales -> team-a -> sales) and a foreign security principal.
    conn.modify(
        dns["sales"],
        {"member": [(ldap3.MODIFY_ADD, [dns["alice"], dns["team-a"], dns["partner"], FSP_DN])]},
    )
    conn.modify(dns["team-a"], {"member": [(ldap3.MODIFY_ADD, [dns["bob"], dns["sales"]])]})
    bulk_dns = [f"CN=bulk{i:04d},{BULK_OU}" for i in range(BULK_USERS)]
    for i, dn in enumerate(bulk_dns):
        conn.add(
            dn,
            USER_CLASSES,
            {"sAMAccountName": f"bulk{i:04d}", "mail": f"bulk{i:04d}@example.test"},
        )
    conn.modify(dns["all-staff"], {"member": [(ldap3.MODIFY_ADD, bulk_dns)]})
    dc.guids = {name: dc.guid_of(conn, dn) for name, dn in dns.items()}
    entries = conn.extend.standard.paged_search(
        BULK_OU, "(objectClass=user)", attributes=["objectGUID"], paged_size=500, generator=False
    )
    dc.bulk_guids = {
        str(uuid.UUID(bytes_le=e["raw_attributes"]["objectGUID"][0]))
        for e in entries
        if e["type"] == "searchResEntry"
    }
    conn.unbind()


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    _require_samba()
    started = time.monotonic()
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        directory = tmp_path_factory.mktemp("samba") / "dc"
        _script("provision", str(directory))
        dc = SambaDC(directory=directory, ca_file=str(directory / "tls" / "ca.pem"))
        dc.start()
        try:
            seed(dc)
            dc.start_seconds = time.monotonic() - started
            yield dc
        finally:
            dc.stop()

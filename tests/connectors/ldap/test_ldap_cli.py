"""`roster sync --connector ldap` as an operator runs it: a subprocess configured by env only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.base import SourceKind
from app.directory.models import Connector
from tests.connectors.ldap.directory import TestOU, expected_directory, make_ou, mirror_snapshot
from tests.connectors.ldap.samba import ADMIN_PASSWORD, ADMIN_UPN
from tests.factories import make_domain

pytestmark = pytest.mark.samba

ROSTER = [sys.executable, "-m", "app"]


def roster(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ROSTER, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def env(database_url: str, samba_dc, ou: TestOU) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    return base | {
        "ROSTER_DATABASE_URL": database_url,
        "ROSTER_LDAP__URL": "ldaps://localhost",
        "ROSTER_LDAP__BIND_DN": ADMIN_UPN,
        "ROSTER_LDAP__BIND_PASSWORD": ADMIN_PASSWORD,
        "ROSTER_LDAP__BASE_DN": ou.dn,
        "ROSTER_LDAP__CA_FILE": samba_dc.ca_file,
        "COLUMNS": "200",
    }


@pytest.fixture
def ou(samba_dc):
    ou = make_ou(samba_dc)
    ou.add_user("ann", aliases=[ou.mail("a.nn")])
    ou.add_user("ben", disabled=True)
    ou.add_contact("partner", f"{ou.prefix}@external.example")
    ou.add_group("team", ["ann", "partner"])
    yield ou
    ou.remove()


async def ldap_connector(sessionmaker: async_sessionmaker[AsyncSession]) -> Connector:
    async with sessionmaker() as session:
        row = await session.scalar(select(Connector).where(Connector.kind == SourceKind.LDAP))
        assert row is not None
        return row


async def test_roster_sync_mirrors_the_directory_then_follows_changes(
    sessionmaker, env: dict[str, str], samba_dc, ou: TestOU
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "example.test")
    result = roster(env, "sync", "--connector", "ldap")
    assert result.returncode == 0, result.stderr
    assert "ldap: ok" in result.stdout
    connector = await ldap_connector(sessionmaker)
    assert (connector.state, connector.first_round_done) == ("ready", True)
    expected = expected_directory(samba_dc, ou.dn)
    assert (await mirror_snapshot(sessionmaker, connector.id)) == expected

    assert roster(env, "lookup", ou.mail("a.nn")).returncode == 0
    assert roster(env, "lookup", ou.mail("nobody")).returncode == 1

    ou.add_user("cy")
    ou.delete("ann")
    result = roster(env, "sync", "--connector", "ldap")
    assert result.returncode == 0, result.stderr
    assert (await mirror_snapshot(sessionmaker, connector.id)) == expected_directory(
        samba_dc, ou.dn
    )
    assert roster(env, "lookup", ou.mail("cy")).returncode == 0
    assert roster(env, "lookup", ou.mail("a.nn")).returncode == 1


async def test_roster_sync_reports_an_ip_address_url_clearly(
    sessionmaker, env: dict[str, str]
) -> None:
    result = roster(env | {"ROSTER_LDAP__URL": "ldaps://127.0.0.1"}, "sync", "--connector", "ldap")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "does not name 127.0.0.1" in message
    assert "FQDN" in message
    assert ADMIN_PASSWORD not in result.stdout + result.stderr
    connector = await ldap_connector(sessionmaker)
    assert connector.state == "error"

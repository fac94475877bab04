"""Domains and addresses from directories take the same keys as those typed by hand: Graph's
/domains, the LDAP domains setting and a source's domain list on every round."""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.base import Page, SourceKind
from app.connectors.graph.mapping import accepted_domains, map_user
from app.connectors.registry import ensure_env_connectors
from app.connectors.runner import run_cycle
from app.directory.models import Address, Domain
from app.directory.records import ChangeSet, RecipientKind, RecipientRecord
from app.settings import LdapSettings, Settings
from tests.connectors.test_runner import no_sleep
from tests.factories import make_connector

NFC = "bücher.example"
NFD = unicodedata.normalize("NFD", NFC)
KEY = "xn--bcher-kva.example"


def test_graph_domains_and_proxy_addresses_meet_in_one_key() -> None:
    accepted = accepted_domains(
        [
            {"id": "Bücher.Example", "isVerified": True, "supportedServices": ["Email"]},
            {"id": "not a domain", "isVerified": True, "supportedServices": ["Email"]},
        ]
    )
    assert accepted == frozenset({KEY})
    record = map_user(
        {
            "id": "u1",
            "mail": f"Jürgen@{NFD}",
            "proxyAddresses": [f"SMTP:Jürgen@{NFD}", f"smtp:j@{KEY}", "smtp:j@elsewhere.example"],
        },
        accepted,
    )
    assert record.addresses == (f"Jürgen@{NFD}", f"j@{KEY}")


async def test_the_ldap_domains_setting_is_stored_as_the_key(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    ldap = LdapSettings(
        bind_dn="cn=roster", bind_password=SecretStr("x"), domains=["Bücher.Example"]
    )
    settings = Settings(database_url=database_url, ldap=ldap, _env_file=None)  # type: ignore[call-arg]
    async with sessionmaker.begin() as session:
        await ensure_env_connectors(session, settings)
    async with sessionmaker() as session:
        assert set(await session.scalars(select(Domain.name))) == {KEY}


class OnePageSource:
    """Every round is one full page with the directory's domain list, spelled its own way."""

    kind = SourceKind.LDAP
    streams = ("users",)

    def __init__(self, domains: list[str]) -> None:
        self.domains = domains

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        record = RecipientRecord("u1", RecipientKind.USER, (f"Jürgen@{NFD}",))
        yield Page(ChangeSet(upserts=[record]), {"round": 1}, final=True, domains=self.domains)


async def test_a_source_spelling_its_domains_differently_keeps_them_round_after_round(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.LDAP, ready=False)
    source = OnePageSource(["Bücher.Example", NFD, "contoso.com"])
    for _ in range(3):
        report = await run_cycle(sessionmaker, connector.id, source, options=no_sleep())
        assert report.ok, report.error
        async with sessionmaker() as session:
            assert set(await session.scalars(select(Domain.name))) == {KEY, "contoso.com"}
            assert set(await session.scalars(select(Address.address))) == {f"jürgen@{KEY}"}
    source.domains = ["contoso.com", "bad domain"]  # bücher.example left the directory
    report = await run_cycle(sessionmaker, connector.id, source, options=no_sleep())
    assert report.ok, report.error
    async with sessionmaker() as session:
        assert set(await session.scalars(select(Domain.name))) == {"contoso.com"}

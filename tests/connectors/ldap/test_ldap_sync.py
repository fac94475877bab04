"""The LDAP source through the real runner, against the Samba DC, on SQLite and PostgreSQL.

Each test works in its own OU (tests/connectors/ldap/directory.py) except the first, which
mirrors the session's seeded OU with its 1,600-member group and compares it with an
independent read of the DC.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.connectors import guard
from app.connectors.base import Page, SourceKind
from app.connectors.ldap.source import STREAM, LdapSource
from app.connectors.runner import CycleReport, RunnerOptions, approve_deletions, run_cycle
from app.directory import groups
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex
from app.directory.models import Connector, Cursor, Recipient
from app.directory.verdicts import Reason, Verdict
from tests.connectors.ldap.directory import (
    Mirror,
    TestOU,
    expected_directory,
    make_ou,
    mirror_snapshot,
)
from tests.factories import make_connector, make_domain

pytestmark = pytest.mark.samba

DOMAINS = ("example.test", "alias.example.test")
PASSWORD = "Passw0rd!Sync1"


async def _no_sleep(_: float) -> None:
    return None


def options(threshold: int = 500, **overrides: Any) -> RunnerOptions:
    return RunnerOptions(
        sleep=_no_sleep, guard=guard.GuardSettings(threshold=threshold), **overrides
    )


@pytest.fixture
async def connector_id(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker.begin() as session:
        for domain in DOMAINS:
            await make_domain(session, domain)
        connector = await make_connector(session, SourceKind.LDAP, ready=False)
        return connector.id


@pytest.fixture
def ou(samba_dc) -> Iterator[TestOU]:
    """users with aliases, disabled users, a shared-mailbox-like account, a contact, and
    groups nested in a cycle (outer -> inner -> outer)."""
    ou = make_ou(samba_dc)
    ou.add_user(
        "ann", aliases=[ou.mail("a.nn"), ou.mail("ann", "alias.example.test")], password=PASSWORD
    )
    ou.add_user("ben")
    ou.add_user("cid", disabled=True)
    ou.add_user("inbox", aliases=[ou.mail("info")], disabled=True)
    ou.add_user("nomail", mail=False)
    ou.add_contact("partner", f"{ou.prefix}@external.example")
    ou.add_group("inner", ["ben", "partner"])
    ou.add_group("outer", ["ann", "inner"])
    ou.add_members("inner", "outer")
    yield ou
    ou.remove()


async def cycle(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: LdapSource,
    **kwargs: Any,
) -> CycleReport:
    kwargs.setdefault("options", options())
    report = await run_cycle(sessionmaker, connector_id, source, **kwargs)
    assert report.ok, report.error
    return report


async def stored_cursor(sessionmaker: async_sessionmaker[AsyncSession], cid: str) -> Cursor:
    async with sessionmaker() as session:
        row = await session.get(Cursor, (cid, STREAM))
        assert row is not None
        return row


async def connector_row(sessionmaker: async_sessionmaker[AsyncSession], cid: str) -> Connector:
    async with sessionmaker() as session:
        row = await session.get(Connector, cid)
        assert row is not None
        return row


async def assert_mirrors(
    sessionmaker: async_sessionmaker[AsyncSession], cid: str, samba_dc, base: str
) -> Mirror:
    expected = expected_directory(samba_dc, base)
    actual = await mirror_snapshot(sessionmaker, cid)
    assert actual.objects.keys() == expected.objects.keys()
    assert actual.objects == expected.objects
    assert actual.members == expected.members
    return expected


@pytest.fixture
async def index(engine: AsyncEngine) -> tuple[IndexSync, list[float]]:
    """A lookup index whose clock the test moves (epoch seconds in a one-item list)."""
    now = [datetime.now(UTC).timestamp()]
    sync = IndexSync(LookupIndex(clock=lambda: now[0]), engine, max_staleness=timedelta(hours=1))
    return sync, now


async def test_full_round_mirrors_the_seeded_directory_exactly(
    sessionmaker, connector_id: str, samba_dc, index
) -> None:
    source = LdapSource(samba_dc.settings(base_dn=[samba_dc.ou], range_size=700, page_size=300))
    report = await cycle(sessionmaker, connector_id, source)
    expected = await assert_mirrors(sessionmaker, connector_id, samba_dc, samba_dc.ou)
    assert report.objects >= samba_dc.bulk_users + 8
    g = samba_dc.guids
    assert expected.objects[g["shared"]][:2] == ("user", False)  # shared-mailbox-like
    assert expected.objects[g["partner"]][0] == "contact"
    assert len(expected.members[g["all-staff"]]) == samba_dc.bulk_users
    row = await connector_row(sessionmaker, connector_id)
    assert (row.state, row.first_round_done, row.last_error) == ("ready", True, None)

    # Transitive members through the sales <-> team-a cycle, and the 1,600-member group.
    async with sessionmaker() as session:
        by_ext = {
            r.external_id: r
            for r in await session.scalars(
                select(Recipient).where(Recipient.connector_id == connector_id)
            )
        }
        sales = await groups.members(session, by_ext[g["sales"]], transitive=True)
        staff = await groups.members(session, by_ext[g["all-staff"]], transitive=True)
    assert {g["alice"], g["team-a"], g["partner"], g["bob"]} <= {m.external_id for m in sales}
    assert g["sales"] not in {m.external_id for m in sales}
    assert {m.external_id for m in staff} == samba_dc.bulk_guids

    sync, _ = index
    await sync.load()
    accepted = {a for a in expected.addresses if a.rpartition("@")[2] in DOMAINS}
    assert sync.index.address_count() == len(accepted)
    for address in accepted:
        assert sync.index.lookup(address).verdict is Verdict.ACCEPT, address
    shared = sync.index.lookup("info@example.test")
    assert (shared.verdict, shared.enabled, shared.primary) == (
        Verdict.ACCEPT,
        False,
        "shared@example.test",
    )
    assert sync.index.lookup("alice+news@example.test").matched == "alice@example.test"
    assert sync.index.lookup("nobody@example.test").reason is Reason.UNKNOWN_RECIPIENT
    assert sync.index.lookup("alice@example.test").source == "ldap"
    # Not an accepted domain: the contact's address is mirrored but never answers accept.
    assert sync.index.lookup("partner@external.example").reason is Reason.DOMAIN_NOT_ACCEPTED


async def test_changes_arrive_through_incremental_rounds(
    sessionmaker, connector_id: str, samba_dc, ou: TestOU, index
) -> None:
    ou.add_members("inner", "cid")
    source = LdapSource(samba_dc.settings(base_dn=[ou.dn], page_size=3))
    full = await cycle(sessionmaker, connector_id, source)
    await assert_mirrors(sessionmaker, connector_id, samba_dc, ou.dn)
    assert full.pages >= 3
    first = (await stored_cursor(sessionmaker, connector_id)).value
    assert first["mode"] == "incremental"

    ou.add_user("dee", aliases=[ou.mail("d")])
    ou.set_aliases("ann", ou.mail("annie"))
    ou.disable("ben")
    ou.delete("cid")
    ou.remove_members("outer", "ann")
    ou.add_members("outer", "dee")
    report = await cycle(sessionmaker, connector_id, source)
    expected = await assert_mirrors(sessionmaker, connector_id, samba_dc, ou.dn)
    # Only what changed was read: dee, ann, ben, outer (and nothing swept).
    assert report.objects <= 6
    second = (await stored_cursor(sessionmaker, connector_id)).value
    assert second["dc"]["highest_usn"] > first["dc"]["highest_usn"]
    assert second["deletions_visible"] is True
    assert second["full_started_at"] == first["full_started_at"]
    assert ou.guids["cid"] not in expected.objects
    async with sessionmaker() as session:
        outer = await session.scalar(
            select(Recipient).where(Recipient.external_id == ou.guids["outer"])
        )
        assert outer is not None
        nested = await groups.members(session, outer, transitive=True)
    assert {m.external_id for m in nested} == {
        ou.guids[n] for n in ("dee", "inner", "ben", "partner")
    }

    sync, _ = index
    await sync.load()
    lookup = sync.index.lookup
    assert lookup(ou.mail("dee")).verdict is Verdict.ACCEPT
    assert lookup(ou.mail("d")).primary == ou.mail("dee")
    assert lookup(ou.mail("annie")).verdict is Verdict.ACCEPT
    assert lookup(ou.mail("a.nn")).verdict is Verdict.REJECT  # alias removed
    assert lookup(ou.mail("ben")).enabled is False
    assert lookup(ou.mail("cid")).verdict is Verdict.REJECT  # deleted

    # Nothing changed: an incremental round reads nothing.
    quiet = await cycle(sessionmaker, connector_id, source)
    assert quiet.objects == 0
    await assert_mirrors(sessionmaker, connector_id, samba_dc, ou.dn)


async def test_a_new_invocation_id_starts_a_full_round(
    sessionmaker, connector_id: str, samba_dc, ou: TestOU
) -> None:
    source = LdapSource(samba_dc.settings(base_dn=[ou.dn]))
    full = await cycle(sessionmaker, connector_id, source)
    # As if the DC had been restored from a backup: its invocationId no longer matches.
    async with sessionmaker.begin() as session:
        row = await session.get(Cursor, (connector_id, STREAM))
        assert row is not None
        value = dict(row.value)
        value["dc"] = dict(value["dc"], invocation_id="00000000-0000-0000-0000-000000000000")
        row.value = value
    ou.add_user("eve")
    report = await cycle(sessionmaker, connector_id, source)
    assert report.objects == full.objects + 1  # everything was read again
    cursor = (await stored_cursor(sessionmaker, connector_id)).value
    assert cursor["dc"]["invocation_id"] != "00000000-0000-0000-0000-000000000000"
    assert cursor["full_started_at"] > value["full_started_at"]
    await assert_mirrors(sessionmaker, connector_id, samba_dc, ou.dn)


async def test_dc_down_mid_round_leaves_the_mirror_and_lookups_until_stale(
    sessionmaker, connector_id: str, samba_dc, ou: TestOU, index
) -> None:
    settings = samba_dc.settings(base_dn=[ou.dn], page_size=2)
    source = LdapSource(settings)
    await cycle(sessionmaker, connector_id, source)
    before = await mirror_snapshot(sessionmaker, connector_id)
    last_success = (await connector_row(sessionmaker, connector_id)).last_success_at

    class DcStopsAfterFirstPage:
        """The DC goes away right after serving the round's first page (the runner reads
        ahead, so stopping it from a progress callback could come after the last read)."""

        kind, streams = source.kind, source.streams

        async def pages(self, stream: str, cursor: Any) -> AsyncIterator[Page]:
            served = 0
            async for page in source.pages(stream, cursor):
                yield page
                served += 1
                if served == 1:
                    samba_dc.stop()

    try:
        report = await run_cycle(
            sessionmaker,
            connector_id,
            DcStopsAfterFirstPage(),
            full=True,
            options=options(max_attempts=2),
        )
        assert not report.ok
        assert await mirror_snapshot(sessionmaker, connector_id) == before
        row = await connector_row(sessionmaker, connector_id)
        assert row.state == "error"
        assert row.last_error is not None
        assert "LDAP domain controller unavailable" in row.last_error
        assert "ldaps://localhost" in row.last_error
        assert row.last_success_at == last_success

        sync, now = index
        await sync.load()
        assert sync.index.lookup(ou.mail("ann")).verdict is Verdict.ACCEPT
        assert sync.index.lookup(ou.mail("nobody")).verdict is Verdict.REJECT
        now[0] += timedelta(hours=2).total_seconds()  # past max_staleness without a success
        assert sync.index.lookup(ou.mail("ann")).verdict is Verdict.ACCEPT
        stale = sync.index.lookup(ou.mail("nobody"))
        assert (stale.verdict, stale.reason) == (Verdict.TEMPFAIL, Reason.STALE)
    finally:
        samba_dc.start()
    await cycle(sessionmaker, connector_id, source)
    assert (await connector_row(sessionmaker, connector_id)).state == "ready"
    await assert_mirrors(sessionmaker, connector_id, samba_dc, ou.dn)


async def test_mass_deletion_is_held_until_approved(
    sessionmaker, connector_id: str, samba_dc, ou: TestOU, index
) -> None:
    for i in range(5):
        ou.add_user(f"bulk{i}")
    source = LdapSource(samba_dc.settings(base_dn=[ou.dn]))
    await cycle(sessionmaker, connector_id, source, options=options(threshold=3))
    before = await mirror_snapshot(sessionmaker, connector_id)
    for i in range(5):
        ou.delete(f"bulk{i}")
    await cycle(sessionmaker, connector_id, source, options=options(threshold=3))
    row = await connector_row(sessionmaker, connector_id)
    assert row.state == "needs_approval"
    assert await mirror_snapshot(sessionmaker, connector_id) == before
    sync, _ = index
    await sync.load()
    assert sync.index.lookup(ou.mail("bulk0")).verdict is Verdict.ACCEPT  # still accepted

    assert await approve_deletions(sessionmaker, connector_id) == 5
    await assert_mirrors(sessionmaker, connector_id, samba_dc, ou.dn)
    assert (await connector_row(sessionmaker, connector_id)).state == "ready"


async def test_without_rights_on_deleted_objects_a_periodic_full_round_sweeps(
    sessionmaker, connector_id: str, samba_dc, ou: TestOU
) -> None:
    now = [datetime.now(UTC)]
    settings = samba_dc.settings(
        base_dn=[ou.dn],
        bind_dn=f"{ou.prefix}ann@example.test",
        bind_password=SecretStr(PASSWORD),
        full_round_interval=timedelta(hours=6),
    )
    source = LdapSource(settings, clock=lambda: now[0])
    await cycle(sessionmaker, connector_id, source)
    ou.delete("ben")
    ou.add_user("fay")
    await cycle(sessionmaker, connector_id, source)
    cursor = (await stored_cursor(sessionmaker, connector_id)).value
    assert cursor["deletions_visible"] is False
    mirror = await mirror_snapshot(sessionmaker, connector_id)
    assert ou.guids["ben"] in mirror.objects  # the tombstone was invisible
    assert ou.guids["fay"] in mirror.objects

    now[0] += timedelta(hours=7)
    report = await cycle(sessionmaker, connector_id, source)
    assert report.objects >= len(ou.dns)
    await assert_mirrors(sessionmaker, connector_id, samba_dc, ou.dn)
    assert (await stored_cursor(sessionmaker, connector_id)).value["full_started_at"] == (
        now[0].isoformat()
    )


async def test_ip_address_against_an_fqdn_certificate_stops_with_a_clear_error(
    sessionmaker, connector_id: str, samba_dc
) -> None:
    source = LdapSource(samba_dc.settings(urls=["ldaps://127.0.0.1"]))
    report = await run_cycle(sessionmaker, connector_id, source, options=options())
    assert not report.ok
    row = await connector_row(sessionmaker, connector_id)
    assert row.state == "error"
    assert "does not name 127.0.0.1" in (row.last_error or "")
    assert "FQDN" in (row.last_error or "")

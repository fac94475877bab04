"""Learned senders on SQLite and PostgreSQL: counting, learning, no duplicates, contradictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connectors.mailflow import learning
from app.connectors.mailflow.learning import LearnedStatus, Sighting
from app.directory import service
from app.directory.models import Recipient
from app.directory.records import ChangeSet, RecipientKind, RecipientRecord, SourceKind
from app.errors import InvalidInput, Malformed
from tests.factories import make_connector, make_domain, make_recipient

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def seen(address: str, minutes: int = 0, evidence: str = "sasl:alice") -> Sighting:
    return Sighting(address, evidence, T0 + timedelta(minutes=minutes))


async def live_learned(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(Recipient.external_id).where(
            Recipient.source == "learned", Recipient.deleted_at.is_(None)
        )
    )
    return sorted(rows)


async def status_of(session: AsyncSession, address: str) -> learning.LearnedView:
    views, _ = await learning.list_learned(session)
    return next(v for v in views if v.sender.address == address)


async def test_sender_becomes_learned_recipient_after_min_count_sightings(
    session: AsyncSession,
) -> None:
    await make_domain(session, "contoso.com")
    first = await learning.record(session, seen("Printer@Contoso.com"), min_count=2)
    assert first.status is LearnedStatus.PENDING
    assert not first.recipients_changed
    assert await live_learned(session) == []
    second = await learning.record(session, seen("printer@contoso.com", 5), min_count=2)
    assert second.status is LearnedStatus.LEARNED
    assert second.recipients_changed
    assert await live_learned(session) == ["printer@contoso.com"]
    row = second.sender
    assert (row.count, utc(row.first_seen_at), utc(row.last_seen_at)) == (
        2,
        T0,
        T0 + timedelta(minutes=5),
    )
    recipient = await session.get(Recipient, row.recipient_id)
    assert recipient is not None
    assert recipient.source == SourceKind.LEARNED.value
    third = await learning.record(session, seen("printer@contoso.com", 1), min_count=2)
    assert (third.status, third.recipients_changed, third.sender.count) == (
        LearnedStatus.LEARNED,
        False,
        3,
    )
    assert utc(third.sender.last_seen_at) == T0 + timedelta(minutes=5)  # an older sighting


@pytest.mark.parametrize(
    "sender", ["alice@contoso.com", "Alias@contoso.com", "alice+x@contoso.com"]
)
async def test_address_owned_by_another_recipient_is_only_counted(
    session: AsyncSession, sender: str
) -> None:
    await make_domain(session, "contoso.com")
    manual = await make_connector(session, SourceKind.MANUAL)
    owner = await make_recipient(
        session, manual, external_id="a", addresses=["alice@contoso.com", "alias@contoso.com"]
    )
    for minute in range(3):
        outcome = await learning.record(session, seen(sender, minute), min_count=1)
        assert outcome.status is LearnedStatus.OWNED
    assert outcome.sender.count == 3
    assert outcome.sender.authority_id is None  # manual is not a directory
    assert await live_learned(session) == []
    view = await status_of(session, outcome.sender.address)
    assert (view.status, view.owner_id, view.owner_source) == (LearnedStatus.OWNED, owner, "manual")


async def test_sender_outside_accepted_domains_is_refused(session: AsyncSession) -> None:
    await make_domain(session, "contoso.com")
    with pytest.raises(InvalidInput, match="not an accepted domain"):
        await learning.record(session, seen("x@gmail.com"), min_count=1)
    with pytest.raises(Malformed):
        await learning.record(session, seen("not an address"), min_count=1)
    assert (await learning.list_learned(session))[1] == 0


async def test_directory_deleting_the_owner_contradicts_and_blocks_learning(
    session: AsyncSession,
) -> None:
    """Graph owned bob@, a sighting saw that; Graph deletes Bob: bob@ must not come back."""
    await make_domain(session, "contoso.com")
    graph = await make_connector(session, SourceKind.GRAPH)
    bob = await make_recipient(
        session, graph, external_id="g-bob", addresses=["bob@contoso.com"], display_name="Bob"
    )
    owned = await learning.record(session, seen("bob@contoso.com"), min_count=1)
    assert owned.status is LearnedStatus.OWNED
    assert (owned.sender.authority_id, owned.sender.authority_source) == (bob, "graph")

    await service.apply(
        session, ChangeSet(deletes=["g-bob"]), connector=service.ConnectorRef.of(graph)
    )
    # Reported at once, before any new sighting persists it.
    view = await status_of(session, "bob@contoso.com")
    assert view.status is LearnedStatus.CONTRADICTED
    assert view.contradiction is not None
    assert "graph deleted 'Bob'" in view.contradiction

    for minute in (1, 2):
        outcome = await learning.record(session, seen("bob@contoso.com", minute), min_count=1)
        assert outcome.status is LearnedStatus.CONTRADICTED
        assert not outcome.recipients_changed
    assert utc(outcome.sender.contradicted_at) == T0 + timedelta(minutes=1)
    assert outcome.sender.count == 3
    assert await live_learned(session) == []


async def test_directory_dropping_the_address_contradicts_it(session: AsyncSession) -> None:
    await make_domain(session, "contoso.com")
    ldap = await make_connector(session, SourceKind.LDAP)
    await make_recipient(
        session, ldap, external_id="guid-1", addresses=["carol@contoso.com", "old@contoso.com"]
    )
    await learning.record(session, seen("old@contoso.com"), min_count=1)
    await make_recipient(session, ldap, external_id="guid-1", addresses=["carol@contoso.com"])
    outcome = await learning.record(session, seen("old@contoso.com", 1), min_count=1)
    assert outcome.status is LearnedStatus.CONTRADICTED
    assert "ldap no longer lists this address" in (outcome.sender.contradiction or "")
    assert await live_learned(session) == []


async def test_directory_takeover_then_deletion_removes_the_learned_recipient(
    session: AsyncSession,
) -> None:
    """Learned first; Graph then claims the address (it wins) and later deletes its user."""
    await make_domain(session, "contoso.com")
    learned = await learning.record(session, seen("dave@contoso.com"), min_count=1)
    assert learned.status is LearnedStatus.LEARNED
    graph = await make_connector(session, SourceKind.GRAPH)
    await make_recipient(
        session, graph, external_id="g-dave", addresses=["dave@contoso.com"], display_name="Dave"
    )
    assert (await status_of(session, "dave@contoso.com")).status is LearnedStatus.OWNED
    await service.apply(
        session, ChangeSet(deletes=["g-dave"]), connector=service.ConnectorRef.of(graph)
    )
    # The service hands the freed address back to the waiting learned recipient; learning
    # reports that as a contradiction at once and removes it on the next reconcile.
    view = await status_of(session, "dave@contoso.com")
    assert view.status is LearnedStatus.CONTRADICTED
    assert "graph claimed this address" in (view.contradiction or "")
    assert await learning.reconcile(session, now=T0 + timedelta(minutes=1))
    assert await live_learned(session) == []
    assert not await learning.reconcile(session, now=T0 + timedelta(minutes=2))

    outcome = await learning.record(session, seen("dave@contoso.com", 3), min_count=1)
    assert outcome.status is LearnedStatus.CONTRADICTED
    assert not outcome.recipients_changed
    assert await live_learned(session) == []


async def test_reconcile_leaves_directory_owned_and_plain_learned_addresses_alone(
    session: AsyncSession,
) -> None:
    await make_domain(session, "contoso.com")
    graph = await make_connector(session, SourceKind.GRAPH)
    await make_recipient(session, graph, external_id="g-1", addresses=["owned@contoso.com"])
    await learning.record(session, seen("owned@contoso.com"), min_count=1)
    await learning.record(session, seen("plain@contoso.com"), min_count=1)
    assert not await learning.reconcile(session, now=T0)
    assert await live_learned(session) == ["plain@contoso.com"]


async def test_unrelated_directory_recipient_does_not_contradict(session: AsyncSession) -> None:
    await make_domain(session, "contoso.com")
    graph = await make_connector(session, SourceKind.GRAPH)
    await make_recipient(session, graph, external_id="g-1", addresses=["erin@contoso.com"])
    await service.apply(
        session, ChangeSet(deletes=["g-1"]), connector=service.ConnectorRef.of(graph)
    )
    # Never seen owning frank@: learning it is fine.
    outcome = await learning.record(session, seen("frank@contoso.com"), min_count=1)
    assert outcome.status is LearnedStatus.LEARNED


async def test_forget_removes_the_learned_recipient_and_the_record(session: AsyncSession) -> None:
    await make_domain(session, "contoso.com")
    outcome = await learning.record(session, seen("gina@contoso.com"), min_count=1)
    recipient_id = outcome.sender.recipient_id
    assert recipient_id is not None
    assert await learning.forget(session, "GINA@contoso.com", now=T0) == [recipient_id]
    assert await live_learned(session) == []
    assert (await learning.list_learned(session))[1] == 0
    # A later trusted sighting starts over.
    again = await learning.record(session, seen("gina@contoso.com", 9), min_count=1)
    assert (again.status, again.sender.count) == (LearnedStatus.LEARNED, 1)


async def test_list_filters_by_status(session: AsyncSession) -> None:
    await make_domain(session, "contoso.com")
    manual = await make_connector(session, SourceKind.MANUAL)
    await make_recipient(session, manual, external_id="m", addresses=["hal@contoso.com"])
    await learning.record(session, seen("hal@contoso.com"), min_count=1)
    await learning.record(session, seen("ivy@contoso.com", 1), min_count=1)
    views, total = await learning.list_learned(session, status=LearnedStatus.LEARNED)
    assert total == 1
    assert [v.sender.address for v in views] == ["ivy@contoso.com"]
    views, total = await learning.list_learned(session)
    assert [v.sender.address for v in views] == ["ivy@contoso.com", "hal@contoso.com"]


async def test_learned_recipient_is_a_user_of_the_learned_connector(
    session: AsyncSession,
) -> None:
    await make_domain(session, "contoso.com")
    outcome = await learning.record(session, seen("jo@contoso.com"), min_count=1)
    recipient = await session.get(Recipient, outcome.sender.recipient_id)
    assert recipient is not None
    assert (recipient.kind, recipient.external_id) == (RecipientKind.USER.value, "jo@contoso.com")
    # A spreadsheet claiming the same address later loses: learned was first, not authoritative.
    sheet = await make_connector(session, SourceKind.SPREADSHEET)
    result = await service.apply(
        session,
        ChangeSet(
            upserts=[RecipientRecord("row-1", RecipientKind.USER, addresses=("jo@contoso.com",))]
        ),
        connector=service.ConnectorRef.of(sheet),
    )
    assert result.conflicts == 1

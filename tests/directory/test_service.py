"""Applying change sets to the mirror, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import service
from app.directory.models import Address, AddressConflict, Change, Recipient
from app.directory.records import ChangeSet, RecipientKind, RecipientRecord, SourceKind
from app.errors import Conflict
from tests.factories import make_connector, make_domain, make_recipient


async def addresses_of(session: AsyncSession, recipient_id: str) -> dict[str, bool]:
    rows = await session.execute(
        select(Address.address, Address.is_primary).where(Address.recipient_id == recipient_id)
    )
    return dict(rows.all())


async def test_upsert_normalizes_addresses_and_marks_primary(session: AsyncSession) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    rid = await make_recipient(
        session, graph, external_id="g1", addresses=["Alice.Smith@Contoso.com", "ALI@contoso.com"]
    )
    assert await addresses_of(session, rid) == {
        "alice.smith@contoso.com": True,
        "ali@contoso.com": False,
    }


async def test_replaying_a_page_changes_nothing(session: AsyncSession) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    page = ChangeSet(upserts=[RecipientRecord("g1", RecipientKind.USER, ("a@contoso.com",))])
    ref = service.ConnectorRef.of(graph)
    first = await service.apply(session, page, connector=ref)
    changes_before = len((await session.scalars(select(Change))).all())
    second = await service.apply(session, page, connector=ref)
    assert (first.added, second.added, second.updated, second.unchanged) == (1, 0, 0, 1)
    assert len((await session.scalars(select(Change))).all()) == changes_before


async def test_alias_added_removed_and_primary_changed(session: AsyncSession) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    rid = await make_recipient(
        session, graph, external_id="g1", addresses=["a@contoso.com", "b@contoso.com"]
    )
    await make_recipient(
        session, graph, external_id="g1", addresses=["c@contoso.com", "a@contoso.com"]
    )
    assert await addresses_of(session, rid) == {"c@contoso.com": True, "a@contoso.com": False}


async def test_authoritative_source_takes_an_address_and_the_conflict_is_listed(
    session: AsyncSession,
) -> None:
    manual = await make_connector(session, SourceKind.MANUAL)
    graph = await make_connector(session, SourceKind.GRAPH)
    loser = await make_recipient(
        session, manual, external_id="m1", addresses=["x@contoso.com", "y@contoso.com"]
    )
    winner = await make_recipient(session, graph, external_id="g1", addresses=["x@contoso.com"])
    assert await addresses_of(session, winner) == {"x@contoso.com": True}
    assert await addresses_of(session, loser) == {"y@contoso.com": False}
    conflict = (await session.scalars(select(AddressConflict))).one()
    assert (conflict.address, conflict.owner_id, conflict.claimant_id) == (
        "x@contoso.com",
        winner,
        loser,
    )


async def test_non_authoritative_claim_loses_and_is_recorded(session: AsyncSession) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    sheet = await make_connector(session, SourceKind.SPREADSHEET)
    owner = await make_recipient(session, graph, external_id="g1", addresses=["x@contoso.com"])
    claimant = await make_recipient(
        session, sheet, external_id="s1", addresses=["x@contoso.com", "z@contoso.com"]
    )
    assert await addresses_of(session, owner) == {"x@contoso.com": True}
    assert await addresses_of(session, claimant) == {"z@contoso.com": False}
    conflict = (await session.scalars(select(AddressConflict))).one()
    assert (conflict.owner_id, conflict.claimant_id) == (owner, claimant)


async def test_manual_claim_on_a_taken_address_raises_naming_the_owner(
    session: AsyncSession,
) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    manual = await make_connector(session, SourceKind.MANUAL)
    await make_recipient(
        session, graph, external_id="g1", addresses=["x@contoso.com"], display_name="Xavier"
    )
    with pytest.raises(Conflict, match="Xavier"):
        await make_recipient(session, manual, external_id="m1", addresses=["x@contoso.com"])


async def test_delete_is_tolerant_and_soft(session: AsyncSession) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    ref = service.ConnectorRef.of(graph)
    rid = await make_recipient(session, graph, external_id="g1", addresses=["a@contoso.com"])
    result = await service.apply(session, ChangeSet(deletes=["g1", "never-seen"]), connector=ref)
    assert result.deleted == 1
    recipient = await session.get(Recipient, rid, populate_existing=True)
    assert recipient is not None and recipient.deleted_at is not None
    assert await addresses_of(session, rid) == {}
    again = await service.apply(session, ChangeSet(deletes=["g1"]), connector=ref)
    assert again.deleted == 0
    # A soft-deleted object that comes back (Graph restore) is live again with its addresses.
    await make_recipient(session, graph, external_id="g1", addresses=["a@contoso.com"])
    assert await addresses_of(session, rid) == {"a@contoso.com": True}


async def test_memberships_are_a_set_of_pairs(session: AsyncSession) -> None:
    from app.directory.groups import members

    graph = await make_connector(session, SourceKind.GRAPH)
    ref = service.ConnectorRef.of(graph)
    await service.apply(
        session,
        ChangeSet(
            upserts=[
                RecipientRecord("grp", RecipientKind.GROUP, ("all@contoso.com",)),
                RecipientRecord("sub", RecipientKind.GROUP, ("sub@contoso.com",)),
                RecipientRecord("u1", RecipientKind.USER, ("u1@contoso.com",)),
            ],
            member_adds={"grp": ["sub", "sub", "later"], "sub": ["u1", "grp"]},
        ),
        connector=ref,
    )
    group = (await session.scalars(select(Recipient).where(Recipient.external_id == "grp"))).one()
    assert {m.external_id for m in await members(session, group, transitive=False)} == {"sub"}
    # The cycle grp -> sub -> grp ends; the member that arrives later joins by external id.
    await make_recipient(session, graph, external_id="later", addresses=["later@contoso.com"])
    transitive = {m.external_id for m in await members(session, group, transitive=True)}
    assert transitive == {"sub", "u1", "later"}
    await service.apply(session, ChangeSet(member_removes={"sub": ["u1"]}), connector=ref)
    transitive = {m.external_id for m in await members(session, group, transitive=True)}
    assert transitive == {"sub", "later"}


async def test_member_sets_replace_the_membership(session: AsyncSession) -> None:
    from app.directory.groups import members

    sheet = await make_connector(session, SourceKind.SPREADSHEET)
    ref = service.ConnectorRef.of(sheet)
    for ext in ("g", "a", "b"):
        await make_recipient(
            session,
            sheet,
            external_id=ext,
            addresses=[f"{ext}@contoso.com"],
            kind=RecipientKind.GROUP if ext == "g" else RecipientKind.USER,
        )
    await service.apply(session, ChangeSet(member_sets={"g": ["a", "b"]}), connector=ref)
    await service.apply(session, ChangeSet(member_sets={"g": ["b"]}), connector=ref)
    group = (await session.scalars(select(Recipient).where(Recipient.external_id == "g"))).one()
    assert [m.external_id for m in await members(session, group, transitive=False)] == ["b"]


async def test_malformed_source_addresses_are_skipped_and_counted(session: AsyncSession) -> None:
    await make_domain(session, "contoso.com")
    graph = await make_connector(session, SourceKind.GRAPH)
    result = await service.apply(
        session,
        ChangeSet(
            upserts=[RecipientRecord("g1", RecipientKind.USER, ("ok@contoso.com", "bad address"))]
        ),
        connector=service.ConnectorRef.of(graph),
    )
    assert result.skipped_addresses == 1
    assert await addresses_of(session, result.recipient_ids["g1"]) == {"ok@contoso.com": True}


async def test_an_alias_moving_between_objects_across_pages_reaches_its_new_owner(
    session: AsyncSession,
) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    a = await make_recipient(
        session, graph, external_id="a", addresses=["a@contoso.com", "x@contoso.com"]
    )
    # The new owner's page comes first: its claim waits as a conflict.
    b = await make_recipient(
        session, graph, external_id="b", addresses=["b@contoso.com", "x@contoso.com"]
    )
    assert "x@contoso.com" not in await addresses_of(session, b)
    # The old owner lets go on a later page: the waiting claim is granted.
    await make_recipient(session, graph, external_id="a", addresses=["a@contoso.com"])
    assert await addresses_of(session, b) == {"b@contoso.com": True, "x@contoso.com": False}
    assert await addresses_of(session, a) == {"a@contoso.com": True}
    assert (await session.scalars(select(AddressConflict))).all() == []


async def test_a_deleted_directory_object_hands_its_address_back(session: AsyncSession) -> None:
    sheet = await make_connector(session, SourceKind.SPREADSHEET)
    graph = await make_connector(session, SourceKind.GRAPH)
    kept = await make_recipient(session, sheet, external_id="s", addresses=["shared@contoso.com"])
    await make_recipient(session, graph, external_id="g", addresses=["shared@contoso.com"])
    assert await addresses_of(session, kept) == {}
    await service.apply(session, ChangeSet(deletes=["g"]), connector=service.ConnectorRef.of(graph))
    assert await addresses_of(session, kept) == {"shared@contoso.com": True}


async def test_a_claim_withdrawn_by_its_claimant_is_forgotten(session: AsyncSession) -> None:
    graph = await make_connector(session, SourceKind.GRAPH)
    await make_recipient(session, graph, external_id="a", addresses=["x@contoso.com"])
    b = await make_recipient(
        session, graph, external_id="b", addresses=["b@contoso.com", "x@contoso.com"]
    )
    await make_recipient(session, graph, external_id="b", addresses=["b@contoso.com"])
    await make_recipient(session, graph, external_id="a", addresses=["a@contoso.com"])
    assert await addresses_of(session, b) == {"b@contoso.com": True}


async def test_large_pages_round_trip_every_value(session: AsyncSession) -> None:
    """Pages over the bulk threshold take PostgreSQL's COPY path and SQLite's raw executemany:
    values must survive both exactly as SQLAlchemy itself would store them."""
    from app.directory.groups import groups_of, members

    graph = await make_connector(session, SourceKind.GRAPH)
    tricky = "Tab\there \\ back\\slash\nnew line \N{SNOWMAN} 'quote' \"dq\" \\N"
    records = [
        RecipientRecord(
            f"u{i}",
            RecipientKind.USER,
            (f"u{i}@contoso.com", f"alias{i}@contoso.com"),
            display_name=f"{tricky} {i}",
            enabled=i % 2 == 0,
            attributes={"department": tricky, "n": i, "none": None},
        )
        for i in range(450)
    ]
    group = RecipientRecord("g", RecipientKind.GROUP, ("all@contoso.com",))
    edges = {"g": [f"u{i}" for i in range(450)] + ["u1"]}
    ref = service.ConnectorRef.of(graph)
    now = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
    result = await service.apply(
        session, ChangeSet(upserts=[*records, group], member_adds=edges), connector=ref, now=now
    )
    assert result.added == 451
    stamped = await session.scalar(
        select(func.count()).select_from(Recipient).where(Recipient.first_seen_at == now)
    )
    assert stamped == 451  # the bulk path stores datetimes in the ORM's own format
    row = (await session.scalars(select(Recipient).where(Recipient.external_id == "u7"))).one()
    assert (row.display_name, row.enabled) == (f"{tricky} 7", False)
    assert row.attributes == {"department": tricky, "n": 7, "none": None}
    assert row.first_seen_at.tzinfo is not None
    assert await addresses_of(session, row.id) == {
        "u7@contoso.com": True,
        "alias7@contoso.com": False,
    }
    group_row = (await session.scalars(select(Recipient).where(Recipient.external_id == "g"))).one()
    assert len(await members(session, group_row, transitive=False)) == 450
    assert [g.external_id for g in await groups_of(session, row, transitive=True)] == ["g"]
    # Re-applying the same large page is a no-op (duplicates skipped, nothing rewritten).
    again = await service.apply(
        session, ChangeSet(upserts=[*records, group], member_adds=edges), connector=ref
    )
    assert (again.added, again.updated, again.unchanged) == (0, 0, 451)
    # The edges were all there already (PostgreSQL's direct COPY fails on the first and falls
    # back to skipping duplicates); one new edge among them still lands.
    newcomer = RecipientRecord("u450", RecipientKind.USER, ("u450@contoso.com",))
    more = {"g": [*edges["g"], "u450"]}
    await service.apply(session, ChangeSet(upserts=[newcomer], member_adds=more), connector=ref)
    assert len(await members(session, group_row, transitive=False)) == 451


async def test_deleting_a_tenant_or_connector_takes_its_recipients_and_addresses(
    session: AsyncSession,
) -> None:
    """Recipients and addresses have no foreign keys (bulk writes); deleting a tenant or a
    connector still takes them, through the cascade to connectors and the delete triggers."""
    from sqlalchemy import delete

    from app.directory.models import Connector, Tenant

    graph = await make_connector(session, SourceKind.GRAPH, tenant="gone")
    await make_connector(session, SourceKind.GRAPH, tenant="stays")
    await make_recipient(session, graph, external_id="a", addresses=["a@contoso.com"])
    sheet = await make_connector(session, SourceKind.SPREADSHEET, tenant="stays")
    await make_recipient(session, sheet, external_id="b", addresses=["b@fabrikam.com"])
    await session.execute(delete(Tenant).where(Tenant.name == "gone"))
    await session.flush()
    assert await session.scalar(select(func.count()).select_from(Recipient)) == 1
    assert await session.scalar(select(func.count()).select_from(Address)) == 1
    await session.execute(delete(Connector).where(Connector.id == sheet.id))
    await session.flush()
    assert await session.scalar(select(func.count()).select_from(Recipient)) == 0
    assert await session.scalar(select(func.count()).select_from(Address)) == 0

"""Bulk writes store exactly what the ORM would: every type, awkward text, duplicates skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.upsert import COPY_THRESHOLD, Rows, bulk_insert, insert_ignore
from app.directory.models import Membership, Recipient

TRICKY = "Tab\there \\ back\\slash\nnew line \N{SNOWMAN} 'quote' \"dq\" \\N \u00e9"
NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def recipient_row(i: int) -> dict[str, Any]:
    return {
        "id": f"id-{i}",
        "tenant_id": "t",
        "connector_id": "c",
        "source": "graph",
        "stream": "users",
        "external_id": f"{TRICKY} {i}",
        "kind": "user",
        "display_name": None if i % 3 == 0 else f"{TRICKY} {i}",
        "enabled": i % 2 == 0,
        "attributes": {"n": i, "big": 2**53 + i, "f": 0.1 * i, "none": None, "s": TRICKY},
        "source_hash": "h" * 64,
        "round_id": None,
        "first_seen_at": NOW,
        "last_seen_at": NOW + timedelta(microseconds=i),
        "deleted_at": None,
    }


async def test_bulk_rows_read_back_exactly_as_written(session: AsyncSession) -> None:
    rows = [recipient_row(i) for i in range(COPY_THRESHOLD + 50)]
    await bulk_insert(session, Recipient.__table__, rows)
    stored = {r.id: r for r in await session.scalars(select(Recipient))}
    assert len(stored) == len(rows)
    for row in rows:
        got = stored[row["id"]]
        assert {name: getattr(got, name) for name in row} == row
    if session.get_bind().dialect.name == "sqlite":  # and in the same storage classes
        session.add(Recipient(**recipient_row(1) | {"id": "orm", "external_id": "orm"}))
        await session.flush()
        compared = [name for name in rows[0] if name not in ("id", "external_id")]
        assert await storage(session, "orm", compared) == await storage(session, "id-1", compared)


async def storage(session: AsyncSession, rid: str, names: list[str]) -> dict[str, Any]:
    """SQLite's storage class and literal of each column of one recipient."""
    columns = ", ".join(f"typeof({name}) || ' ' || quote({name})" for name in names)
    query = text(f"SELECT {columns} FROM recipients WHERE id = :id")  # noqa: S608 - test names
    return dict(zip(names, (await session.execute(query, {"id": rid})).one(), strict=True))


async def test_insert_ignore_skips_existing_and_repeated_keys(session: AsyncSession) -> None:
    def edges(members: range) -> Rows:
        names = ("group_id", "member_connector_id", "member_external_id", "member_key")
        return Rows(names, [("g", "c", f"{TRICKY} {m}", m) for m in members])

    await insert_ignore(session, Membership.__table__, edges(range(COPY_THRESHOLD)))
    # Half of them are stored already, and every new one comes twice.
    again = edges(range(COPY_THRESHOLD // 2, COPY_THRESHOLD + 100))
    again.values.extend(edges(range(COPY_THRESHOLD, COPY_THRESHOLD + 100)).values)
    await insert_ignore(session, Membership.__table__, again)
    stored = (
        await session.execute(select(Membership.member_external_id, Membership.member_key))
    ).all()
    assert sorted(stored, key=lambda edge: edge[1]) == [
        (f"{TRICKY} {m}", m) for m in range(COPY_THRESHOLD + 100)
    ]

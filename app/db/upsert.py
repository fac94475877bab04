"""Dialect-aware INSERT ... ON CONFLICT, the one place that knows SQLite from PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def _insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def insert_ignore(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_insert(session, table).on_conflict_do_nothing(), rows)


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    keys: list[str],
    update: list[str],
) -> None:
    if not rows:
        return
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={name: getattr(stmt.excluded, name) for name in update}
    )
    await session.execute(stmt, rows)

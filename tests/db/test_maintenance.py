"""Planner statistics follow a bulk load: grown tables are analyzed, untouched ones are not."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.maintenance import MIN_CHANGED_ROWS, analyze_grown


async def _analyzed(session: AsyncSession, table: str) -> bool:
    return bool(
        await session.scalar(
            text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = :t"),
            {"t": table},
        )
    )


async def test_analyze_grown_picks_the_tables_that_grew(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        postgresql = session.get_bind().dialect.name == "postgresql"
    if not postgresql:  # SQLite plans these lookups without statistics: nothing to do
        assert await analyze_grown(sessionmaker) == []
        return
    rows = [
        {"t": "tenant", "r": f"r{i}", "a": "upsert", "s": "graph", "at": "2026-11-27T12:00:00Z"}
        for i in range(MIN_CHANGED_ROWS + 10)
    ]
    async with sessionmaker.begin() as session:
        await session.execute(
            text(
                "INSERT INTO changes (tenant_id, recipient_id, action, source, at) "
                "VALUES (:t, :r, :a, :s, :at)"
            ),
            rows,
        )
    deadline = time.monotonic() + 20  # cumulative statistics reach the view within seconds
    grown: list[str] = []
    while "changes" not in grown and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        async with sessionmaker.begin() as session:
            await session.execute(text("SELECT 1"))  # a commit lets this backend flush stats
        grown = await analyze_grown(sessionmaker)
    assert "changes" in grown
    assert "memberships" not in grown
    async with sessionmaker() as session:
        assert await _analyzed(session, "changes")
    # Analyzed now: the same rows do not trigger it again.
    assert "changes" not in await analyze_grown(sessionmaker)

"""Where each connector stream resumes; saved in the same transaction as the page it follows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.upsert import upsert
from app.directory.models import Cursor


@dataclass(slots=True)
class StreamCursor:
    value: dict[str, Any]
    round_id: str | None  # set while a full round is under way (resumable)


async def load(session: AsyncSession, connector_id: str, stream: str) -> StreamCursor | None:
    row = await session.get(Cursor, (connector_id, stream))
    if row is None:
        return None
    return StreamCursor(dict(row.value or {}), row.round_id)


async def save(
    session: AsyncSession,
    connector_id: str,
    stream: str,
    value: dict[str, Any],
    *,
    round_id: str | None,
    now: datetime,
) -> None:
    await upsert(
        session,
        Cursor.__table__,
        [
            {
                "connector_id": connector_id,
                "stream": stream,
                "value": value,
                "round_id": round_id,
                "updated_at": now,
            }
        ],
        keys=["connector_id", "stream"],
        update=["value", "round_id", "updated_at"],
    )


async def clear(session: AsyncSession, connector_id: str, stream: str | None = None) -> None:
    stmt = delete(Cursor).where(Cursor.connector_id == connector_id)
    if stream is not None:
        stmt = stmt.where(Cursor.stream == stream)
    await session.execute(stmt)


async def completed_streams(session: AsyncSession, connector_id: str) -> set[str]:
    """Streams whose last round finished (a stored resume point and no full round under way)."""
    rows = await session.execute(
        select(Cursor.stream).where(Cursor.connector_id == connector_id, Cursor.round_id.is_(None))
    )
    return {stream for (stream,) in rows}

"""The numbered `changes` log that every process's lookup index follows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.upsert import bulk_insert
from app.directory.models import Change


async def record_changes(
    session: AsyncSession,
    tenant_id: str,
    recipient_ids: Sequence[str | None],
    *,
    action: str,
    source: str,
    at: datetime,
    detail: str | None = None,
) -> None:
    """Append change rows. On PostgreSQL the table lock makes sequence numbers commit in order,
    so a reader that has seen seq N never later finds a smaller one appear (no missed change)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
    await bulk_insert(
        session,
        Change.__table__,
        [
            {
                "tenant_id": tenant_id,
                "recipient_id": rid,
                "action": action,
                "source": str(source),
                "detail": detail,
                "at": at,
            }
            for rid in dict.fromkeys(recipient_ids)
        ],
    )

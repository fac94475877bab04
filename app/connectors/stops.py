"""Graceful stops: a cancelled round ends at a page boundary and says so on its connector row.

A stop (SIGTERM, SIGINT, the shutdown of `roster serve`) cancels the task running the round.
Work that must not be split (a page's transaction, the round's last record) runs to its end
first, then the cancellation goes on; the round is recorded as interrupted and its lease is
released, so the next run starts at once and resumes after the last committed page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import runs
from app.directory.models import Connector

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def finish_first(work: Awaitable[T]) -> T:
    """Await `work` to its end even when cancelled meanwhile, then re-raise the cancellation."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("work finished during a stop failed: error=%r", task.exception())
        raise asyncio.CancelledError
    return task.result()


async def record_interrupted(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    owner: str,
    *,
    now: datetime,
    progress: dict[str, Any],
    run: tuple[int, runs.Counts] | None = None,
) -> bool:
    """Mark the round of `owner` interrupted (and its `run` history row, if it has one: an
    error `interrupted`) and release its lease; False if it held none (stopped while waiting
    for the lease, or the round had already finished)."""
    async with sessionmaker.begin() as session:
        result = await session.execute(
            update(Connector)
            .where(Connector.id == connector_id, Connector.lease_owner == owner)
            .values(
                progress=progress
                | {"running": False, "interrupted": True, "interrupted_at": now.isoformat()},
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        recorded = bool(getattr(result, "rowcount", 0))
        if recorded and run is not None:
            run_id, counts = run
            await runs.finish(
                session,
                run_id,
                outcome=runs.Outcome.ERROR,
                counts=counts,
                now=now,
                error=runs.INTERRUPTED,
            )
    if recorded:
        logger.warning(
            "round interrupted, lease released: connector=%s stream=%s pages=%s",
            connector_id,
            progress.get("stream"),
            progress.get("pages"),
        )
    return recorded

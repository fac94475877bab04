"""The history of a connector's rounds (`GET /v1/connectors/{id}/runs`): one row per round.

A round costs one insert (outcome `running`, committed with the lease it starts under) and one
update when it ends, never a write per page. A process killed mid-round leaves its row
`running`; the next round of that connector, holding the lease, closes it as an `error` with
the error `interrupted` (a stopped round, SIGTERM, ends the same way). Rows beyond the newest
`KEEP` of a connector are deleted when a round starts. Errors are stored redacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntId, UTCDateTime
from app.logging import redact

KEEP = 1_000  # rows kept per connector
INTERRUPTED = "interrupted"  # the error of a round stopped or killed before its end


class Trigger(StrEnum):
    """What started a round."""

    SCHEDULE = "schedule"
    MANUAL = "manual"  # POST /v1/connectors/{id}/sync, roster sync, a spreadsheet import
    NOTIFICATION = "notification"  # a Graph change notification
    STARTUP = "startup"  # the first round of a worker


class Outcome(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    HELD = "held"  # succeeded, but the deletion guard holds deletions for approval
    RUNNING = "running"


class ConnectorRun(Base):
    __tablename__ = "connector_runs"
    __table_args__ = (Index("ix_connector_runs_connector_id_id", "connector_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    connector_id: Mapped[str] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    round: Mapped[str] = mapped_column(String(20))  # full | incremental
    trigger: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    objects: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


@dataclass(slots=True)
class Counts:
    """What a round did, as the run row records it."""

    pages: int = 0
    objects: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    held: int = 0


async def start(
    session: AsyncSession, connector_id: str, *, full: bool, trigger: Trigger, now: datetime
) -> int:
    """Close the connector's stale `running` rows, prune old rows, insert this round's row.

    Call it holding the lease: any other `running` row of the connector is then a round that
    will never finish (its process was killed, or it lost the lease)."""
    await close_stale(session, connector_id, now=now)
    await _prune(session, connector_id)
    run = ConnectorRun(
        connector_id=connector_id,
        started_at=now,
        round="full" if full else "incremental",
        trigger=trigger.value,
        outcome=Outcome.RUNNING.value,
        pages=0,
        objects=0,
        added=0,
        updated=0,
        deleted=0,
        held=0,
    )
    session.add(run)
    await session.flush()
    return run.id


async def finish(
    session: AsyncSession,
    run_id: int,
    *,
    outcome: Outcome,
    counts: Counts,
    now: datetime,
    full: bool | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {
        "finished_at": now,
        "outcome": outcome.value,
        "pages": counts.pages,
        "objects": counts.objects,
        "added": counts.added,
        "updated": counts.updated,
        "deleted": counts.deleted,
        "held": counts.held,
        "error": redact(error) if error is not None else None,
    }
    if full is not None:  # a round that had to start over became a full one
        values["round"] = "full" if full else "incremental"
    await session.execute(
        update(ConnectorRun)
        .where(ConnectorRun.id == run_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def record(
    session: AsyncSession,
    connector_id: str,
    *,
    full: bool,
    trigger: Trigger,
    outcome: Outcome,
    counts: Counts,
    started_at: datetime,
    now: datetime,
    error: str | None = None,
) -> int:
    """A round that ran inside one transaction (a spreadsheet import): inserted finished."""
    run_id = await start(session, connector_id, full=full, trigger=trigger, now=started_at)
    await finish(session, run_id, outcome=outcome, counts=counts, now=now, error=error)
    return run_id


async def close_stale(session: AsyncSession, connector_id: str, *, now: datetime) -> int:
    """Rounds left `running` by a process that is gone become errors (`interrupted`)."""
    result = await session.execute(
        update(ConnectorRun)
        .where(
            ConnectorRun.connector_id == connector_id,
            ConnectorRun.outcome == Outcome.RUNNING.value,
        )
        .values(outcome=Outcome.ERROR.value, error=INTERRUPTED, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def _prune(session: AsyncSession, connector_id: str) -> None:
    """Keep the newest KEEP - 1 rows, so with the one about to be inserted there are KEEP."""
    oldest_kept = await session.scalar(
        select(ConnectorRun.id)
        .where(ConnectorRun.connector_id == connector_id)
        .order_by(ConnectorRun.id.desc())
        .offset(KEEP - 2)
        .limit(1)
    )
    if oldest_kept is None:
        return
    await session.execute(
        delete(ConnectorRun)
        .where(ConnectorRun.connector_id == connector_id, ConnectorRun.id < oldest_kept)
        .execution_options(synchronize_session=False)
    )


async def newest(session: AsyncSession, connector_id: str, *, limit: int) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(ConnectorRun)
        .where(ConnectorRun.connector_id == connector_id)
        .order_by(ConnectorRun.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": run.id,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "round": run.round,
            "trigger": run.trigger,
            "outcome": run.outcome,
            "pages": run.pages,
            "objects": run.objects,
            "added": run.added,
            "updated": run.updated,
            "deleted": run.deleted,
            "held": run.held,
            "error": run.error,
        }
        for run in rows
    ]

"""The mass-deletion guard (docs/contracts.md §5).

During a round, deletions (`@removed`, tombstones, and the end-of-round sweep) are only noted in
`pending_deletions`. When the round ends they are applied together, unless there are more than
the threshold: then they stay held, the connector shows `needs_approval`, and the held addresses
keep being accepted until an operator approves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.sets import chunks, one_of
from app.db.upsert import insert_ignore
from app.directory import service
from app.directory.models import PendingDeletion, Recipient, Tenant
from app.directory.records import ChangeSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuardSettings:
    threshold: int = 500  # more deletions than this in one round are held; 0 disables the guard
    threshold_percent: float = 0.0  # also hold above this share of the connector's objects


async def for_tenant(
    session: AsyncSession, tenant_id: str, settings: GuardSettings
) -> GuardSettings:
    """The deployment's thresholds with the tenant's policy laid over them (None inherits)."""
    row = (
        await session.execute(
            select(Tenant.delete_threshold, Tenant.delete_threshold_percent).where(
                Tenant.id == tenant_id
            )
        )
    ).first()
    if row is None:
        return settings
    threshold, percent = row
    return GuardSettings(
        settings.threshold if threshold is None else threshold,
        settings.threshold_percent if percent is None else percent,
    )


async def hold(
    session: AsyncSession,
    connector_id: str,
    external_ids: Sequence[str],
    *,
    reason: str,
    now: datetime,
) -> None:
    await insert_ignore(
        session,
        PendingDeletion.__table__,
        [
            {"connector_id": connector_id, "external_id": ext, "reason": reason, "created_at": now}
            for ext in dict.fromkeys(external_ids)
        ],
    )


async def release_seen(
    session: AsyncSession, connector_id: str, external_ids: Sequence[str]
) -> None:
    """An object that shows up again is no longer to be deleted."""
    for chunk in chunks(session, external_ids):
        await session.execute(
            delete(PendingDeletion).where(
                PendingDeletion.connector_id == connector_id,
                one_of(session, PendingDeletion.external_id, chunk),
            )
        )


async def pending_count(session: AsyncSession, connector_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(PendingDeletion)
        .where(PendingDeletion.connector_id == connector_id)
    )
    return int(count or 0)


async def settle(
    session: AsyncSession,
    connector: service.ConnectorRef,
    settings: GuardSettings,
    *,
    now: datetime,
    approved: bool = False,
    tally: service.ApplyResult | None = None,
) -> bool:
    """Apply the held deletions, or keep holding them. Returns True when they stay held.

    `settings` are the deployment's; the connector's tenant policy overrides them. `tally`, when
    given, adds the deletions applied (a round's run history counts them)."""
    pending = list(
        await session.scalars(
            select(PendingDeletion.external_id).where(PendingDeletion.connector_id == connector.id)
        )
    )
    if not pending:
        return False
    if not approved:
        settings = await for_tenant(session, connector.tenant_id, settings)
    if not approved and _over_threshold(len(pending), await _live(session, connector.id), settings):
        logger.warning(
            "deletion guard holds deletions: connector=%s pending=%d threshold=%d",
            connector.id,
            len(pending),
            settings.threshold,
        )
        return True
    applied = await service.apply(session, ChangeSet(deletes=pending), connector=connector, now=now)
    if tally is not None:
        tally.deleted += applied.deleted
    await session.execute(
        delete(PendingDeletion).where(PendingDeletion.connector_id == connector.id)
    )
    return False


def _over_threshold(count: int, live: int, settings: GuardSettings) -> bool:
    if settings.threshold > 0 and count > settings.threshold:
        return True
    return (
        settings.threshold_percent > 0
        and live > 0
        and count * 100 > settings.threshold_percent * live
    )


async def _live(session: AsyncSession, connector_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Recipient)
        .where(Recipient.connector_id == connector_id, Recipient.deleted_at.is_(None))
    )
    return int(count or 0)


async def sweep_candidates(
    session: AsyncSession, connector_id: str, stream: str, round_id: str
) -> list[str]:
    """Objects of a stream that a completed full round did not see."""
    rows = await session.scalars(
        select(Recipient.external_id).where(
            Recipient.connector_id == connector_id,
            Recipient.stream == stream,
            Recipient.deleted_at.is_(None),
            (Recipient.round_id != round_id) | Recipient.round_id.is_(None),
        )
    )
    return list(rows)

"""One runner per connector across replicas: a lease claimed by a conditional UPDATE.

Portable (no advisory locks): the row is claimed only if free, expired or already ours, and
`rowcount` tells whether we got it. A dead replica's connectors move after one lease period.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Connector

LEASE_PERIOD = timedelta(seconds=60)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def claim(
    session: AsyncSession,
    connector_id: str,
    owner: str,
    *,
    now: datetime,
    period: timedelta = LEASE_PERIOD,
) -> bool:
    result = await session.execute(
        update(Connector)
        .where(
            Connector.id == connector_id,
            or_(
                Connector.lease_owner.is_(None),
                Connector.lease_owner == owner,
                Connector.lease_expires_at < now,
            ),
        )
        .values(lease_owner=owner, lease_expires_at=now + period)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def release(session: AsyncSession, connector_id: str, owner: str) -> None:
    await session.execute(
        update(Connector)
        .where(Connector.id == connector_id, Connector.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )

"""One runner per connector across replicas: a lease claimed by a conditional UPDATE.

Portable (no advisory locks): the row is claimed only if free, expired or already ours, and
`rowcount` tells whether we got it. A holder is named `host:pid:nonce`; a lease whose holder is
a process of this host that no longer exists (killed, OOM) is taken over at once, any other
holder's after one lease period. A takeover that guesses wrong (two hosts with one name) costs
the other runner its next page only: every page re-claims the lease in its own transaction.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Connector

LEASE_PERIOD = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of `acquire`: claimed, or who holds the lease and until when."""

    claimed: bool
    holder: str | None = None
    expires_at: datetime | None = None
    taken_from: str | None = None  # the vanished process the lease was taken over from


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_gone(owner: str) -> bool:
    """Whether `owner` names a process of this host that no longer exists.

    Only a holder on this host can be checked; anything else (another host, a name that is not
    `host:pid:...`, a pid that exists, even another user's) counts as alive."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def is_live(owner: str | None, expires_at: datetime | None, now: datetime) -> bool:
    """Whether a lease is held by a process that may still be working on it."""
    if owner is None or expires_at is None or expires_at < now:
        return False
    return not is_gone(owner)


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


async def acquire(
    session: AsyncSession,
    connector_id: str,
    owner: str,
    *,
    now: datetime,
    period: timedelta = LEASE_PERIOD,
) -> Attempt:
    """Claim the lease, taking it over from a vanished process of this host if need be."""
    if await claim(session, connector_id, owner, now=now, period=period):
        return Attempt(claimed=True)
    row = (
        await session.execute(
            select(Connector.lease_owner, Connector.lease_expires_at).where(
                Connector.id == connector_id
            )
        )
    ).one_or_none()
    if row is None:
        return Attempt(claimed=False)
    holder, expires_at = row
    if holder is not None and is_gone(holder):
        result = await session.execute(
            update(Connector)
            .where(Connector.id == connector_id, Connector.lease_owner == holder)
            .values(lease_owner=owner, lease_expires_at=now + period)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0):
            return Attempt(claimed=True, taken_from=holder)
    return Attempt(claimed=False, holder=holder, expires_at=expires_at)


async def release(session: AsyncSession, connector_id: str, owner: str) -> None:
    await session.execute(
        update(Connector)
        .where(Connector.id == connector_id, Connector.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )

"""Domains a connection found in its directory but may not take, because another tenant owns
them (a domain routes to one tenant). Kept on the connector row so its status names them until
the conflict is gone; the names are stored, the owner is read when the status is asked for."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Connector, Domain, Tenant

KEY = "domain_conflicts"


def sticky(progress: dict[str, Any] | None) -> dict[str, Any]:
    """The part of a connector's progress that outlives a round's progress updates."""
    names = (progress or {}).get(KEY)
    return {KEY: names} if names else {}


async def record(session: AsyncSession, connector_id: str, names: list[str]) -> None:
    """The domains the last domain list could not take; an empty list clears the warning."""
    connector = await session.get(Connector, connector_id)
    if connector is None:
        return
    progress = {k: v for k, v in (connector.progress or {}).items() if k != KEY}
    if names:
        progress[KEY] = sorted(names)
    if progress != (connector.progress or {}):
        connector.progress = progress  # a new dict: JSON columns do not track mutation


async def warnings(session: AsyncSession, connector: Connector) -> list[str]:
    """`domain fabrikam.com is owned by tenant fabrikam`, for each conflict still standing."""
    names = (connector.progress or {}).get(KEY) or []
    if not names:
        return []
    rows = await session.execute(
        select(Domain.name, Tenant.name)
        .join(Tenant, Tenant.id == Domain.tenant_id)
        .where(Domain.name.in_(names), Domain.tenant_id != connector.tenant_id)
        .order_by(Domain.name)
    )
    return [f"domain {domain} is owned by tenant {owner}" for domain, owner in rows]

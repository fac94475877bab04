"""Connector status as operators see it (`GET /v1/connectors`, `roster status`). Never a secret."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connectors import domain_conflicts, guard, leases
from app.directory.models import Connector, Tenant
from app.directory.tenants import count_addresses


async def describe(session: AsyncSession, connector: Connector, tenant: str) -> dict[str, Any]:
    objects, addresses = await count_addresses(session, connector.id)
    lag = None
    if connector.last_success_at is not None:
        # UTCDateTime hands back aware values on SQLite too.
        lag = max(0.0, (datetime.now(UTC) - connector.last_success_at).total_seconds())
    return {
        "id": connector.id,
        "tenant": tenant,
        "name": connector.name,
        "kind": connector.kind,
        "state": connector.state,
        "paused": connector.paused,
        "first_round_done": connector.first_round_done,
        "last_success_at": connector.last_success_at,
        "lag_seconds": lag,
        "last_error": connector.last_error,
        "last_error_at": connector.last_error_at,
        "objects": objects,
        "addresses": addresses,
        "held_deletions": await guard.pending_count(session, connector.id),
        "progress": _progress(connector),
        # Not errors: the connector runs, but something it found is not being served.
        "warnings": await domain_conflicts.warnings(session, connector),
    }


def _progress(connector: Connector) -> dict[str, Any]:
    """The row's progress; a `running` left behind by a killed process reads as interrupted."""
    progress = dict(connector.progress or {})
    now = datetime.now(UTC)
    if progress.get("running") and not leases.is_live(
        connector.lease_owner, connector.lease_expires_at, now
    ):
        progress |= {"running": False, "interrupted": True}
    return progress


async def describe_one(session: AsyncSession, connector: Connector) -> dict[str, Any]:
    tenant = await session.get(Tenant, connector.tenant_id)
    return await describe(session, connector, tenant.name if tenant else "")


async def set_paused(session: AsyncSession, connector: Connector, paused: bool) -> None:
    """Pause or resume: every replica's worker sees the row before its next round."""
    connector.paused = paused
    connector.updated_at = datetime.now(UTC)
    await session.flush()


async def list_status(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Connector, Tenant.name)
        .join(Tenant, Tenant.id == Connector.tenant_id)
        .order_by(Tenant.name, Connector.name)
    )
    return [await describe(session, connector, tenant) for connector, tenant in rows]


async def find(session: AsyncSession, id_or_name: str) -> Connector | None:
    """By id, `TENANT/NAME`, or by name when the name is unique across tenants."""
    connector = await session.get(Connector, id_or_name)
    if connector is not None:
        return connector
    tenant, slash, name = id_or_name.partition("/")
    if slash:
        return await session.scalar(
            select(Connector)
            .join(Tenant, Tenant.id == Connector.tenant_id)
            .where(Tenant.name == tenant, Connector.name == name)
        )
    found = list(await session.scalars(select(Connector).where(Connector.name == id_or_name)))
    return found[0] if len(found) == 1 else None

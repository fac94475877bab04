"""Tenants, their accepted domains and their connector rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.upsert import insert_ignore
from app.directory.addresses import normalize_domain
from app.directory.changelog import record_changes
from app.directory.models import Address, Connector, Domain, Recipient, Tenant, new_id
from app.directory.records import SourceKind
from app.errors import Conflict, NotFound

DEFAULT_TENANT = "default"


async def ensure_tenant(session: AsyncSession, name: str = DEFAULT_TENANT) -> Tenant:
    """Get or create; safe when several replicas start on a fresh database at once (the insert
    skips an existing name instead of failing on the unique constraint)."""
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        await insert_ignore(
            session, Tenant.__table__,
            [{"id": new_id(), "name": name, "created_at": datetime.now(UTC)}],
        )  # fmt: skip
        tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
        if tenant is None:  # pragma: no cover - the row exists after the insert either way
            raise NotFound(f"tenant {name} could not be created")
    return tenant


async def ensure_connector(
    session: AsyncSession, tenant: Tenant, kind: SourceKind, name: str | None = None
) -> Connector:
    name = name or kind.value
    connector = await session.scalar(
        select(Connector).where(Connector.tenant_id == tenant.id, Connector.name == name)
    )
    if connector is None:
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "id": new_id(),
            "tenant_id": tenant.id,
            "name": name,
            "kind": kind.value,
            "settings": {},
            "progress": {},
            "updated_at": now,
            # Sources that are complete by construction are ready at once.
            "state": "initial_sync" if kind.is_authoritative else "ready",
            "first_round_done": not kind.is_authoritative,
            "full_sync_requested": False,
            "last_success_at": None if kind.is_authoritative else now,
        }
        await insert_ignore(session, Connector.__table__, [row])  # a racing replica may win
        connector = await session.scalar(
            select(Connector).where(Connector.tenant_id == tenant.id, Connector.name == name)
        )
        if connector is None:  # pragma: no cover - the row exists after the insert either way
            raise NotFound(f"connector {name} could not be created")
    return connector


async def list_domains(session: AsyncSession) -> list[tuple[Domain, str]]:
    rows = await session.execute(
        select(Domain, Tenant.name)
        .join(Tenant, Tenant.id == Domain.tenant_id)
        .order_by(Domain.name)
    )
    return [(domain, tenant) for domain, tenant in rows]


async def add_domain(
    session: AsyncSession, tenant: Tenant, name: str, *, source: str = "manual"
) -> Domain:
    domain_name = normalize_domain(name)
    existing = await session.get(Domain, domain_name)
    if existing is not None:
        if existing.tenant_id != tenant.id:
            owner = await session.get(Tenant, existing.tenant_id)
            raise Conflict(
                f"domain {domain_name} already belongs to tenant "
                f"{owner.name if owner else existing.tenant_id}; a domain routes to one tenant"
            )
        return existing
    domain = Domain(
        name=domain_name, tenant_id=tenant.id, source=source, created_at=datetime.now(UTC)
    )
    session.add(domain)
    await session.flush()
    await record_changes(
        session,
        tenant.id,
        [None],
        action="domain",
        source=source,
        at=domain.created_at,
        detail=domain_name,
    )
    return domain


async def find_domain(session: AsyncSession, name: str) -> Domain | None:
    return await session.get(Domain, normalize_domain(name))


async def remove_domain(session: AsyncSession, name: str) -> None:
    domain = await session.get(Domain, normalize_domain(name))
    if domain is None:
        raise NotFound(f"domain {name} is not an accepted domain")
    await session.delete(domain)
    await session.flush()
    await record_changes(
        session,
        domain.tenant_id,
        [None],
        action="domain",
        source="manual",
        at=datetime.now(UTC),
        detail=domain.name,
    )


async def tenant_for_domain(session: AsyncSession, domain: str) -> Tenant | None:
    return await session.scalar(
        select(Tenant).join(Domain, Domain.tenant_id == Tenant.id).where(Domain.name == domain)
    )


async def count_addresses(session: AsyncSession, connector_id: str) -> tuple[int, int]:
    """(live objects, addresses) of one connector, for status displays."""
    objects = await session.scalar(
        select(func.count())
        .select_from(Recipient)
        .where(Recipient.connector_id == connector_id, Recipient.deleted_at.is_(None))
    )
    addresses = await session.scalar(
        select(func.count())
        .select_from(Address)
        .join(Recipient, Recipient.id == Address.recipient_id)
        .where(Recipient.connector_id == connector_id)
    )
    return int(objects or 0), int(addresses or 0)

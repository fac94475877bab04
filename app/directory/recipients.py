"""Read models of recipients and the manual source's create/update/delete rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import service
from app.directory.addresses import domain_of, normalize
from app.directory.models import Address, Connector, Domain, Recipient, Tenant, new_id
from app.directory.records import ChangeSet, RecipientKind, RecipientRecord, SourceKind
from app.directory.tenants import ensure_connector, tenant_for_domain
from app.errors import Conflict, InvalidInput, Malformed, NotFound

GROUP_KINDS = (RecipientKind.GROUP.value,)


async def describe(session: AsyncSession, recipients: Sequence[Recipient]) -> list[dict[str, Any]]:
    """Recipients with their addresses and tenant names, in the API's shape."""
    ids = [r.id for r in recipients]
    addresses: dict[str, list[tuple[str, bool]]] = {rid: [] for rid in ids}
    if ids:
        rows = await session.execute(
            select(Address.recipient_id, Address.address, Address.is_primary)
            .where(Address.recipient_id.in_(ids))
            .order_by(Address.address)
        )
        for rid, address, is_primary in rows:
            addresses[rid].append((address, is_primary))
    tenants = dict((await session.execute(select(Tenant.id, Tenant.name))).all())
    out = []
    for r in recipients:
        owned = addresses[r.id]
        primary = next((a for a, p in owned if p), owned[0][0] if owned else None)
        out.append(
            {
                "id": r.id,
                "tenant": tenants.get(r.tenant_id, r.tenant_id),
                "kind": r.kind,
                "source": r.source,
                "email": primary,
                "aliases": [a for a, _ in owned if a != primary],
                "display_name": r.display_name,
                "enabled": r.enabled,
                "attributes": r.attributes or {},
                "first_seen_at": r.first_seen_at,
                "last_seen_at": r.last_seen_at,
            }
        )
    return out


# `tenant_ids` (None = every tenant) restricts a call to some tenants' recipients: another
# tenant's recipient is absent, with the very answer an absent one gets.


async def get_live(
    session: AsyncSession, recipient_id: str, tenant_ids: frozenset[str] | None = None
) -> Recipient:
    recipient = await session.get(Recipient, recipient_id)
    if (
        recipient is None
        or recipient.deleted_at is not None
        or (tenant_ids is not None and recipient.tenant_id not in tenant_ids)
    ):
        raise NotFound(f"no recipient with id {recipient_id}")
    return recipient


async def find_by_address(
    session: AsyncSession, raw: str, tenant_ids: frozenset[str] | None = None
) -> Recipient:
    address = normalize(raw)
    recipient = await session.scalar(
        select(Recipient)
        .join(Address, Address.recipient_id == Recipient.id)
        .where(Address.address == address, Recipient.deleted_at.is_(None))
    )
    if recipient is None or (tenant_ids is not None and recipient.tenant_id not in tenant_ids):
        raise NotFound(f"no recipient has the address {address}")
    return recipient


async def resolve(
    session: AsyncSession, id_or_address: str, tenant_ids: frozenset[str] | None = None
) -> Recipient:
    if "@" in id_or_address:
        return await find_by_address(session, id_or_address, tenant_ids)
    return await get_live(session, id_or_address, tenant_ids)


async def list_recipients(
    session: AsyncSession,
    *,
    kinds: Sequence[str] | None,
    exclude_kinds: Sequence[str] = (),
    source: str | None = None,
    limit: int = 100,
    offset: int = 0,
    tenant_ids: frozenset[str] | None = None,
) -> tuple[list[Recipient], int]:
    conditions: list[ColumnElement[bool]] = [Recipient.deleted_at.is_(None)]
    if tenant_ids is not None:
        conditions.append(Recipient.tenant_id.in_(sorted(tenant_ids)))
    if kinds:
        conditions.append(Recipient.kind.in_(kinds))
    if exclude_kinds:
        conditions.append(Recipient.kind.not_in(exclude_kinds))
    if source:
        conditions.append(Recipient.source == source)
    total = await session.scalar(select(func.count()).select_from(Recipient).where(*conditions))
    rows = await session.scalars(
        select(Recipient)
        .where(*conditions)
        .order_by(Recipient.first_seen_at, Recipient.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)


async def _tenant_of(
    session: AsyncSession, addresses: Sequence[str], tenant_ids: frozenset[str] | None = None
) -> Tenant:
    """Every address of a manual object must be in one tenant's accepted domains (of the
    allowed tenants: to a tenant key, another tenant's domain is not an accepted domain)."""
    tenant: Tenant | None = None
    for address in addresses:
        found = await tenant_for_domain(session, domain_of(address))
        if found is not None and tenant_ids is not None and found.id not in tenant_ids:
            found = None
        if found is None:
            query = select(Domain.name)
            if tenant_ids is not None:
                query = query.where(Domain.tenant_id.in_(sorted(tenant_ids)))
            known = ", ".join(sorted(await session.scalars(query))) or "none yet"
            raise InvalidInput(
                f"{address}: domain {domain_of(address)} is not an accepted domain "
                f"(accepted: {known}; add it with POST /v1/domains)"
            )
        if tenant is not None and found.id != tenant.id:
            raise InvalidInput("all addresses of one recipient must belong to one tenant")
        tenant = found
    if tenant is None:
        raise InvalidInput("a recipient needs at least one address")
    return tenant


def _normalized(email: str, aliases: Sequence[str]) -> list[str]:
    out: list[str] = []
    for raw in [email, *aliases]:
        try:
            address = normalize(raw)
        except Malformed as exc:
            raise Malformed(f"{raw!r} is not a valid address: {exc.message}") from exc
        if address not in out:
            out.append(address)
    return out


async def save_manual(
    session: AsyncSession,
    *,
    recipient: Recipient | None,
    email: str,
    aliases: Sequence[str],
    display_name: str | None,
    enabled: bool,
    kind: RecipientKind,
    attributes: dict[str, Any],
    tenant_ids: frozenset[str] | None = None,
) -> Recipient:
    """Create or replace a manual recipient; 409 names the owner of an address already taken."""
    addresses = _normalized(email, aliases)
    tenant = await _tenant_of(session, addresses, tenant_ids)
    if recipient is not None and recipient.tenant_id != tenant.id:
        raise InvalidInput("a recipient cannot move to another tenant's domain")
    connector = await ensure_connector(session, tenant, SourceKind.MANUAL)
    external_id = recipient.external_id if recipient is not None else new_id()
    record = RecipientRecord(
        external_id=external_id,
        kind=kind,
        addresses=tuple(addresses),
        primary=addresses[0],
        display_name=display_name,
        enabled=enabled,
        attributes=attributes,
    )
    result = await service.apply(
        session,
        ChangeSet(upserts=[record]),
        connector=service.ConnectorRef.of(connector),
        strict=True,
    )
    saved = await session.get(Recipient, result.recipient_ids[external_id], populate_existing=True)
    if saved is None:
        raise NotFound(f"recipient {external_id} vanished while it was saved")
    return saved


async def require_manual(session: AsyncSession, recipient: Recipient) -> Connector:
    connector = await session.get(Connector, recipient.connector_id)
    if connector is None or connector.kind != SourceKind.MANUAL.value:
        source = connector.kind if connector else recipient.source
        raise Conflict(
            f"recipient {recipient.id} is managed by its {source} source; change it there"
        )
    return connector


async def delete_manual(session: AsyncSession, recipient: Recipient) -> None:
    connector = await require_manual(session, recipient)
    await service.apply(
        session,
        ChangeSet(deletes=[recipient.external_id]),
        connector=service.ConnectorRef.of(connector),
        now=datetime.now(UTC),
    )

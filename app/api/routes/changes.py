"""The change feed (audit, replicas) and the list of address conflicts."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select

from app.api.deps import ReadKey, SessionDep
from app.api.errors import responses
from app.api.schemas import ChangeList, ChangeRead, ConflictList, ConflictRead
from app.directory.models import AddressConflict, Change, Tenant

router = APIRouter(tags=["changes"])


@router.get("/v1/changes", responses=responses(401, 403, 422))
async def list_changes(
    session: SessionDep,
    key: ReadKey,
    since: int = Query(default=0, ge=0, le=2**62),
    limit: int = Query(default=500, ge=1, le=5000),
) -> ChangeList:
    tenants = dict((await session.execute(select(Tenant.id, Tenant.name))).all())
    query = select(Change).where(Change.seq > since)
    if key.tenants is not None:  # a tenant key follows its tenants' changes only
        query = query.where(Change.tenant_id.in_(sorted(key.tenants)))
    rows = await session.scalars(query.order_by(Change.seq).limit(limit))
    items = [
        ChangeRead(
            seq=c.seq,
            tenant=tenants.get(c.tenant_id),
            recipient_id=c.recipient_id,
            action=c.action,
            source=c.source,
            at=c.at,
        )
        for c in rows
    ]
    return ChangeList(items=items, next=items[-1].seq if items else since)


@router.get("/v1/conflicts", responses=responses(401, 403))
async def list_conflicts(session: SessionDep, key: ReadKey) -> ConflictList:
    query = select(AddressConflict, Tenant.name).join(
        Tenant, Tenant.id == AddressConflict.tenant_id
    )
    if key.tenants is not None:
        query = query.where(AddressConflict.tenant_id.in_(sorted(key.tenants)))
    rows = await session.execute(query.order_by(AddressConflict.address))
    return ConflictList(
        items=[
            ConflictRead(
                address=c.address,
                tenant=tenant,
                owner_id=c.owner_id,
                claimant_id=c.claimant_id,
                detected_at=c.detected_at,
            )
            for c, tenant in rows
        ]
    )

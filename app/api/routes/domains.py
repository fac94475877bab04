"""Accepted domains: the domain of an address routes a lookup to its tenant.

A tenant key lists, adds and removes only its tenants' domains: another tenant's domain, or
adding one to another tenant, is 404 as if absent.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import IndexSyncDep, ReadKey, SessionDep, WriteKey
from app.api.errors import responses
from app.api.schemas import DomainCreate, DomainList, DomainRead
from app.directory import tenant_admin
from app.directory import tenants as tenant_service

router = APIRouter(prefix="/v1/domains", tags=["domains"])


@router.get("", responses=responses(401, 403))
async def list_domains(session: SessionDep, key: ReadKey) -> DomainList:
    rows = await tenant_service.list_domains(session)
    return DomainList(
        items=[
            DomainRead(name=d.name, tenant=tenant, source=d.source, created_at=d.created_at)
            for d, tenant in rows
            if key.allows(d.tenant_id)
        ]
    )


@router.post(
    "",
    status_code=201,
    responses=responses(400, 401, 403, 404, 409, 422),
)
async def add_domain(
    body: DomainCreate, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> DomainRead:
    """Accept a domain for a tenant (404 if the tenant does not exist); a domain routes to one
    tenant, so one already owned by another tenant is a 409 naming the owner."""
    name = body.tenant or tenant_service.DEFAULT_TENANT
    tenant = await tenant_admin.get_or_default(session, name)
    key.check(tenant.id, f"tenant {name} does not exist")
    domain = await tenant_service.add_domain(session, tenant, body.name)
    await session.commit()
    await sync.refresh_after_write()
    return DomainRead(
        name=domain.name, tenant=tenant.name, source=domain.source, created_at=domain.created_at
    )


@router.delete(
    "/{name}",
    status_code=204,
    responses=responses(400, 401, 403, 404),
)
async def remove_domain(
    name: str, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> Response:
    if key.tenants is not None:
        domain = await tenant_service.find_domain(session, name)
        key.check(domain.tenant_id if domain else None, f"domain {name} is not an accepted domain")
    await tenant_service.remove_domain(session, name)
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)

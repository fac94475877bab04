"""Accepted domains: the domain of an address routes a lookup to its tenant."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import IndexSyncDep, ReadScope, SessionDep, WriteScope
from app.api.errors import responses
from app.api.schemas import DomainCreate, DomainList, DomainRead
from app.directory import tenant_admin
from app.directory import tenants as tenant_service

router = APIRouter(prefix="/v1/domains", tags=["domains"])


@router.get("", dependencies=[ReadScope], responses=responses(401, 403))
async def list_domains(session: SessionDep) -> DomainList:
    rows = await tenant_service.list_domains(session)
    return DomainList(
        items=[
            DomainRead(name=d.name, tenant=tenant, source=d.source, created_at=d.created_at)
            for d, tenant in rows
        ]
    )


@router.post(
    "",
    status_code=201,
    dependencies=[WriteScope],
    responses=responses(400, 401, 403, 404, 409, 422),
)
async def add_domain(body: DomainCreate, session: SessionDep, sync: IndexSyncDep) -> DomainRead:
    """Accept a domain for a tenant (404 if the tenant does not exist); a domain routes to one
    tenant, so one already owned by another tenant is a 409 naming the owner."""
    tenant = await tenant_admin.get_or_default(
        session, body.tenant or tenant_service.DEFAULT_TENANT
    )
    domain = await tenant_service.add_domain(session, tenant, body.name)
    await session.commit()
    await sync.refresh_after_write()
    return DomainRead(
        name=domain.name, tenant=tenant.name, source=domain.source, created_at=domain.created_at
    )


@router.delete(
    "/{name}",
    status_code=204,
    dependencies=[WriteScope],
    responses=responses(400, 401, 403, 404),
)
async def remove_domain(name: str, session: SessionDep, sync: IndexSyncDep) -> Response:
    await tenant_service.remove_domain(session, name)
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)

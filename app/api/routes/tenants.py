"""Tenants (docs/contracts.md §6): the organisations one deployment serves, and their policy.

Reading takes the `read` scope; creating, changing and removing a tenant take `admin`, since a
tenant's policy decides how its mail is answered. A tenant key sees and changes only its own
tenants (others are 404); only a global admin key creates or removes tenants.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import AdminKey, AdminScope, IndexSyncDep, ReadKey, SessionDep
from app.api.errors import responses
from app.api.schemas import TenantCreate, TenantList, TenantPolicyBody, TenantRead, TenantUpdate
from app.directory import tenant_admin
from app.directory.models import Tenant

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


def _read(tenant: Tenant) -> TenantRead:
    return TenantRead(
        id=tenant.id,
        name=tenant.name,
        display_name=tenant.display_name,
        created_at=tenant.created_at,
        policy=TenantPolicyBody(**tenant_admin.TenantPolicy.of(tenant).as_dict()),
    )


@router.get("", responses=responses(401, 403))
async def list_tenants(session: SessionDep, key: ReadKey) -> TenantList:
    tenants = await tenant_admin.list_tenants(session)
    return TenantList(items=[_read(t) for t in tenants if key.allows(t.id)])


@router.post(
    "",
    status_code=201,
    dependencies=[AdminScope],
    responses=responses(400, 401, 403, 409, 422, 503),
)
async def create_tenant(body: TenantCreate, session: SessionDep, sync: IndexSyncDep) -> TenantRead:
    tenant = await tenant_admin.create_tenant(
        session,
        body.name,
        display_name=body.display_name,
        policy=tenant_admin.TenantPolicy(**body.policy.model_dump()),
    )
    await session.commit()
    await sync.refresh_after_write()
    return _read(tenant)


async def _visible(session: SessionDep, key: ReadKey, name: str) -> Tenant:
    tenant = await tenant_admin.get_tenant(session, name)
    key.check(tenant.id, f"tenant {name} does not exist")
    return tenant


@router.get("/{name}", responses=responses(401, 403, 404))
async def get_tenant(name: str, session: SessionDep, key: ReadKey) -> TenantRead:
    return _read(await _visible(session, key, name))


@router.patch(
    "/{name}",
    responses=responses(400, 401, 403, 404, 422, 503),
)
async def update_tenant(
    name: str, body: TenantUpdate, session: SessionDep, sync: IndexSyncDep, key: AdminKey
) -> TenantRead:
    """Change the display name or policy keys; a policy key set to null inherits again. Every
    process's lookups follow a policy change within a second."""
    await _visible(session, key, name)
    tenant = await tenant_admin.update_tenant(
        session,
        name,
        display_name=body.display_name,
        set_display_name="display_name" in body.model_fields_set,
        policy=body.policy.model_dump(exclude_unset=True) if body.policy else None,
    )
    await session.commit()
    await sync.refresh_after_write()
    return _read(tenant)


@router.delete(
    "/{name}",
    status_code=204,
    dependencies=[AdminScope],
    responses=responses(400, 401, 403, 404, 409, 503),
)
async def delete_tenant(name: str, session: SessionDep, sync: IndexSyncDep) -> Response:
    """Remove a tenant; 409 while it has domains or connectors (named in the detail), and
    always for the `default` tenant."""
    await tenant_admin.delete_tenant(session, name)
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)

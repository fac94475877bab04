"""API keys over HTTP (docs/contracts.md §6): list, create (the key shown once), revoke.

Only a global admin key manages keys: a tenant admin key gets 404 here, so no tenant key can
mint a key wider than itself. Answers never carry a key's hash, nor the key after creation.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from app.api.deps import AdminScope, IndexSyncDep, SessionDep
from app.api.errors import responses
from app.apikeys import create_key, describe_keys, list_keys, revoke_key

router = APIRouter(prefix="/v1/apikeys", tags=["apikeys"])


class ApiKeyCreate(BaseModel):
    name: str = Field(max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=4)
    tenants: list[str] | None = Field(
        default=None, max_length=1000, description="tenant names; null or absent = global"
    )


class ApiKeyRead(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    tenants: list[str] | None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyList(BaseModel):
    items: list[ApiKeyRead]


class ApiKeyCreated(BaseModel):
    id: str
    name: str
    scopes: list[str]
    tenants: list[str] | None
    key: str = Field(description="the key itself: shown this once, stored only as a hash")


@router.get("", dependencies=[AdminScope], responses=responses(401, 403, 404))
async def list_apikeys(session: SessionDep) -> ApiKeyList:
    rows = await describe_keys(session, await list_keys(session))
    return ApiKeyList(items=[ApiKeyRead.model_validate(row) for row in rows])


@router.post(
    "",
    status_code=201,
    dependencies=[AdminScope],
    responses=responses(401, 403, 404, 422, 503),
)
async def create_apikey(
    body: ApiKeyCreate, session: SessionDep, sync: IndexSyncDep
) -> ApiKeyCreated:
    """An unknown tenant is 422 naming it; `tenants` empty or null makes a global key."""
    row, key = await create_key(session, body.name, body.scopes, body.tenants)
    shown = (await describe_keys(session, [row]))[0]
    await session.commit()
    await sync.refresh_after_write()
    return ApiKeyCreated(
        id=row.id, name=row.name, scopes=shown["scopes"], tenants=shown["tenants"], key=key
    )


@router.delete(
    "/{key_id}",
    status_code=204,
    dependencies=[AdminScope],
    responses=responses(401, 403, 404, 503),
)
async def delete_apikey(key_id: str, session: SessionDep, sync: IndexSyncDep) -> Response:
    """Revoke a key (by id or name); every process stops accepting it within a second."""
    await revoke_key(session, key_id)
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)

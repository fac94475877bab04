"""Manual users: the API is a connector like any other (source `manual`).

A tenant key lists and changes only its tenants' users (others are 404); creating a user in a
domain of another tenant is the 422 an unaccepted domain gets.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from app.api.deps import IndexSyncDep, ReadKey, SessionDep, WriteKey
from app.api.errors import responses
from app.api.schemas import RecipientList, RecipientRead, UserCreate, UserUpdate
from app.apikeys import KeyInfo
from app.directory import recipients as recipient_service
from app.directory.recipients import GROUP_KINDS, describe
from app.directory.records import RecipientKind

router = APIRouter(prefix="/v1/users", tags=["users"])


async def _read(session: SessionDep, recipient_id: str, key: KeyInfo) -> RecipientRead:
    recipient = await recipient_service.get_live(session, recipient_id, key.tenants)
    return RecipientRead.model_validate((await describe(session, [recipient]))[0])


@router.get("", responses=responses(401, 403))
async def list_users(
    session: SessionDep,
    key: ReadKey,
    source: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
) -> RecipientList:
    rows, total = await recipient_service.list_recipients(
        session,
        kinds=None,
        exclude_kinds=GROUP_KINDS,
        source=source,
        limit=limit,
        offset=offset,
        tenant_ids=key.tenants,
    )
    return RecipientList.model_validate({"items": await describe(session, rows), "total": total})


@router.post(
    "",
    status_code=201,
    responses=responses(400, 401, 403, 409, 413, 422, 503),
)
async def create_user(
    body: UserCreate, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> RecipientRead:
    recipient = await recipient_service.save_manual(
        session,
        recipient=None,
        email=body.email,
        aliases=body.aliases,
        display_name=body.display_name,
        enabled=body.enabled,
        kind=body.kind,
        attributes=body.attributes,
        tenant_ids=key.tenants,
    )
    await session.commit()
    await sync.refresh_after_write()
    return await _read(session, recipient.id, key)


@router.get(
    "/{user_id}",
    responses=responses(401, 403, 404),
)
async def get_user(user_id: str, session: SessionDep, key: ReadKey) -> RecipientRead:
    return await _read(session, user_id, key)


@router.patch(
    "/{user_id}",
    responses=responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def update_user(
    user_id: str, body: UserUpdate, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> RecipientRead:
    recipient = await recipient_service.get_live(session, user_id, key.tenants)
    await recipient_service.require_manual(session, recipient)
    current = await _read(session, user_id, key)
    email = body.email if body.email is not None else current.email
    aliases = body.aliases if body.aliases is not None else current.aliases
    await recipient_service.save_manual(
        session,
        recipient=recipient,
        email=email or "",
        aliases=aliases,
        display_name=body.display_name if body.display_name is not None else current.display_name,
        enabled=body.enabled if body.enabled is not None else current.enabled,
        kind=body.kind or RecipientKind(current.kind),
        attributes=body.attributes if body.attributes is not None else current.attributes,
        tenant_ids=key.tenants,
    )
    await session.commit()
    await sync.refresh_after_write()
    return await _read(session, user_id, key)


@router.delete(
    "/{user_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 503),
)
async def delete_user(
    user_id: str, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> Response:
    recipient = await recipient_service.get_live(session, user_id, key.tenants)
    await recipient_service.delete_manual(session, recipient)
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)

"""Groups from every source, their direct and nested members, and manual groups.

A tenant key sees and changes only its tenants' groups and members (others are 404)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from app.api.deps import IndexSyncDep, ReadKey, SessionDep, WriteKey
from app.api.errors import responses
from app.api.schemas import GroupCreate, MemberAdd, RecipientList, RecipientRead
from app.apikeys import KeyInfo
from app.directory import groups as group_service
from app.directory import recipients as recipient_service
from app.directory.models import Recipient
from app.directory.recipients import GROUP_KINDS, describe
from app.directory.records import RecipientKind
from app.errors import InvalidInput, NotFound

router = APIRouter(prefix="/v1/groups", tags=["groups"])


async def _group(session: SessionDep, group_id: str, key: KeyInfo) -> Recipient:
    group = await recipient_service.get_live(session, group_id, key.tenants)
    if group.kind not in GROUP_KINDS:
        raise NotFound(f"recipient {group_id} is not a group")
    return group


@router.get("", responses=responses(401, 403))
async def list_groups(
    session: SessionDep,
    key: ReadKey,
    source: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),
) -> RecipientList:
    rows, total = await recipient_service.list_recipients(
        session,
        kinds=GROUP_KINDS,
        source=source,
        limit=limit,
        offset=offset,
        tenant_ids=key.tenants,
    )
    return RecipientList.model_validate({"items": await describe(session, rows), "total": total})


@router.post(
    "",
    status_code=201,
    responses=responses(400, 401, 403, 404, 409, 422),
)
async def create_group(
    body: GroupCreate, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> RecipientRead:
    """A manual group; without an email it is a plain (non mail-enabled) group."""
    members = [await recipient_service.resolve(session, m, key.tenants) for m in body.members]
    if body.email is None:
        if body.aliases:
            raise InvalidInput("a group without an email cannot have aliases")
        raise InvalidInput("a manual group needs an email address")
    group = await recipient_service.save_manual(
        session,
        recipient=None,
        email=body.email,
        aliases=body.aliases,
        display_name=body.display_name,
        enabled=True,
        kind=RecipientKind.GROUP,
        attributes={},
        tenant_ids=key.tenants,
    )
    for member in members:
        await group_service.add_member(session, group, member)
    await session.commit()
    await sync.refresh_after_write()
    return RecipientRead.model_validate((await describe(session, [group]))[0])


@router.get(
    "/{group_id}",
    responses=responses(401, 403, 404),
)
async def get_group(group_id: str, session: SessionDep, key: ReadKey) -> RecipientRead:
    group = await _group(session, group_id, key)
    return RecipientRead.model_validate((await describe(session, [group]))[0])


@router.get(
    "/{group_id}/members",
    responses=responses(401, 403, 404),
)
async def group_members(
    group_id: str, session: SessionDep, key: ReadKey, transitive: bool = Query(default=False)
) -> RecipientList:
    group = await _group(session, group_id, key)
    found = await group_service.members(session, group, transitive=transitive)
    found = [m for m in found if key.allows(m.tenant_id)]
    return RecipientList.model_validate(
        {"items": await describe(session, found), "total": len(found)}
    )


@router.post(
    "/{group_id}/members",
    status_code=204,
    responses=responses(400, 401, 403, 404, 409, 422),
)
async def add_group_member(
    group_id: str, body: MemberAdd, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> Response:
    group = await _group(session, group_id, key)
    await recipient_service.require_manual(session, group)
    member = await recipient_service.resolve(session, body.member, key.tenants)
    await group_service.add_member(session, group, member)
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)


@router.delete(
    "/{group_id}/members/{member}",
    status_code=204,
    responses=responses(400, 401, 403, 404, 409),
)
async def remove_group_member(
    group_id: str, member: str, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> Response:
    group = await _group(session, group_id, key)
    await recipient_service.require_manual(session, group)
    target = await recipient_service.resolve(session, member, key.tenants)
    if not await group_service.remove_member(session, group, target):
        raise NotFound(f"{member} is not a direct member of group {group_id}")
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)


@router.delete(
    "/{group_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 503),
)
async def delete_group(
    group_id: str, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> Response:
    group = await _group(session, group_id, key)
    await recipient_service.require_manual(session, group)
    await group_service.ensure_not_nested(session, group)
    await recipient_service.delete_manual(session, group)
    await session.commit()
    await sync.refresh_after_write()
    return Response(status_code=204)

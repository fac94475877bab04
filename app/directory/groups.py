"""Group membership: direct edges are stored, transitive membership is computed.

Cycles are legal in Active Directory (A contains B contains A), so every walk keeps a visited
set and ends after each group has been expanded once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import and_, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.changelog import record_changes
from app.directory.models import Membership, Recipient, member_key
from app.directory.records import RecipientKind
from app.errors import Conflict, InvalidInput

_CHUNK = 500


async def direct_members(
    session: AsyncSession, group_ids: Sequence[str]
) -> dict[str, list[Recipient]]:
    out: dict[str, list[Recipient]] = {gid: [] for gid in group_ids}
    for start in range(0, len(group_ids), _CHUNK):
        chunk = group_ids[start : start + _CHUNK]
        rows = await session.execute(
            select(Membership.group_id, Recipient)
            .join(
                Recipient,
                and_(
                    Recipient.connector_id == Membership.member_connector_id,
                    Recipient.external_id == Membership.member_external_id,
                ),
            )
            .where(Membership.group_id.in_(chunk), Recipient.deleted_at.is_(None))
            .order_by(Recipient.display_name, Recipient.id)
        )
        for gid, member in rows:
            out[gid].append(member)
    return out


async def members(session: AsyncSession, group: Recipient, *, transitive: bool) -> list[Recipient]:
    """Members of a group; transitive lists every member of nested groups once (groups too)."""
    if not transitive:
        return (await direct_members(session, [group.id]))[group.id]
    seen: dict[str, Recipient] = {}
    expanded = {group.id}
    frontier = [group.id]
    while frontier:
        found = await direct_members(session, frontier)
        frontier = []
        for member_list in found.values():
            for member in member_list:
                if member.id == group.id or member.id in seen:
                    continue
                seen[member.id] = member
                if member.kind == RecipientKind.GROUP.value and member.id not in expanded:
                    expanded.add(member.id)
                    frontier.append(member.id)
    return list(seen.values())


async def parent_groups(session: AsyncSession, recipients: Iterable[Recipient]) -> list[Recipient]:
    keys = [(r.connector_id, r.external_id) for r in recipients]
    if not keys:
        return []
    parents: list[Recipient] = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = await session.scalars(
            select(Recipient)
            .join(Membership, Membership.group_id == Recipient.id)
            .where(
                Membership.member_key.in_(sorted({member_key(ext) for _, ext in chunk})),
                tuple_(Membership.member_connector_id, Membership.member_external_id).in_(chunk),
                Recipient.deleted_at.is_(None),
            )
        )
        parents += list(rows)
    return parents


async def groups_of(
    session: AsyncSession, recipient: Recipient, *, transitive: bool
) -> list[Recipient]:
    found: dict[str, Recipient] = {}
    frontier = [recipient]
    while frontier:
        parents = [p for p in await parent_groups(session, frontier) if p.id not in found]
        for parent in parents:
            found[parent.id] = parent
        frontier = parents if transitive else []
    found.pop(recipient.id, None)
    return sorted(found.values(), key=lambda g: (g.display_name or "", g.id))


async def add_member(session: AsyncSession, group: Recipient, member: Recipient) -> None:
    if group.kind != RecipientKind.GROUP.value:
        raise InvalidInput(f"recipient {group.id} is not a group")
    if member.tenant_id != group.tenant_id:
        raise InvalidInput("a group can only contain recipients of its own tenant")
    exists = await session.get(Membership, (group.id, member.connector_id, member.external_id))
    if exists is None:
        session.add(
            Membership(
                group_id=group.id,
                member_connector_id=member.connector_id,
                member_external_id=member.external_id,
                member_key=member_key(member.external_id),
            )
        )
        await session.flush()
        await record_changes(
            session,
            group.tenant_id,
            [group.id],
            action="members",
            source=group.source,
            at=datetime.now(UTC),
        )


async def remove_member(session: AsyncSession, group: Recipient, member: Recipient) -> bool:
    result = await session.execute(
        delete(Membership).where(
            Membership.group_id == group.id,
            Membership.member_connector_id == member.connector_id,
            Membership.member_external_id == member.external_id,
        )
    )
    removed = bool(getattr(result, "rowcount", 0))
    if removed:
        await record_changes(
            session,
            group.tenant_id,
            [group.id],
            action="members",
            source=group.source,
            at=datetime.now(UTC),
        )
    return removed


async def ensure_not_nested(session: AsyncSession, group: Recipient) -> None:
    """Deleting a group that sits inside another would silently shrink the parent: refuse."""
    parents = await parent_groups(session, [group])
    if parents:
        names = ", ".join(f"{p.display_name or p.id} ({p.id})" for p in parents)
        raise Conflict(
            f"group {group.display_name or group.id} is a member of {names}; "
            "remove it from those groups first"
        )

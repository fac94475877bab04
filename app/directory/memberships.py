"""Write group -> member edges: additions, removals and whole member lists (LDAP, spreadsheets).

Edges name members by external id, so an edge may arrive before its member does; a full Graph
round writes a million of them, hence value tuples and one bulk statement per page."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.sets import chunks, one_of
from app.db.upsert import Rows, bulk_insert, insert_ignore
from app.directory.changelog import record_changes
from app.directory.models import Membership, Recipient, member_key
from app.directory.records import ChangeSet, Edges
from app.directory.writes import ApplyResult, ConnectorRef


async def apply_memberships(
    session: AsyncSession, changes: ChangeSet, connector: ConnectorRef, result: ApplyResult
) -> None:
    group_exts = changes.member_adds.keys() | changes.member_removes.keys()
    group_exts |= changes.member_sets.keys()
    if not group_exts:
        return
    group_ids = dict(result.recipient_ids)
    missing = [g for g in group_exts if g not in group_ids]
    for chunk in chunks(session, missing):
        rows = await session.execute(
            select(Recipient.external_id, Recipient.id).where(
                Recipient.connector_id == connector.id,
                one_of(session, Recipient.external_id, chunk),
                Recipient.deleted_at.is_(None),
            )
        )
        group_ids.update(dict(rows.all()))

    replaced = _by_group_id(changes.member_sets, group_ids)
    await _delete_edges(session, list(replaced), connector.id)
    removes = [
        {"g": group_id, "c": connector.id, "m": member}
        for group_id, members in _by_group_id(changes.member_removes, group_ids).items()
        for member in members
    ]
    if removes:  # one primary-key delete per edge (a three-column IN list scans on PostgreSQL)
        table = Membership.__table__
        await session.execute(
            table.delete().where(
                table.c.group_id == bindparam("g"),
                table.c.member_connector_id == bindparam("c"),
                table.c.member_external_id == bindparam("m"),
            ),
            removes,
        )
    # Replaced groups were emptied above, so their edges cannot conflict: a plain bulk insert.
    await bulk_insert(session, Membership.__table__, _edge_rows(connector.id, replaced))
    adds = _by_group_id(changes.member_adds, group_ids)
    for group_id in adds.keys() & replaced.keys():  # already written with the full list
        written = set(replaced[group_id])
        adds[group_id] = [m for m in adds[group_id] if m not in written]
    await insert_ignore(session, Membership.__table__, _edge_rows(connector.id, adds))


async def replace_connector_edges(
    session: AsyncSession,
    member_sets: dict[str, list[str]],
    *,
    connector: ConnectorRef,
    now: datetime,
) -> None:
    """Set this connector's members of groups another connector owns (a spreadsheet row naming
    a directory or manual group), keyed by group recipient id; the owner's edges stay as they
    are, and its rounds replace only its own (`apply_memberships`)."""
    if not member_sets:
        return
    await _delete_edges(session, list(member_sets), connector.id)
    await bulk_insert(session, Membership.__table__, _edge_rows(connector.id, member_sets))
    await record_changes(
        session,
        connector.tenant_id,
        list(member_sets),
        action="members",
        source=connector.kind,
        at=now,
    )


async def _delete_edges(session: AsyncSession, group_ids: list[str], connector_id: str) -> None:
    """Only the edges whose members are `connector_id`'s: a group may also hold members that
    another connector added (a spreadsheet naming a directory group)."""
    for chunk in chunks(session, group_ids):
        await session.execute(
            delete(Membership)
            .where(
                one_of(session, Membership.group_id, chunk),
                Membership.member_connector_id == connector_id,
            )
            .execution_options(synchronize_session=False)
        )


def _by_group_id(edges: Edges, group_ids: dict[str, str]) -> dict[str, list[str]]:
    """Edges of the groups that exist, keyed by recipient id, each member once per group."""
    return {
        group_ids[group]: list(dict.fromkeys(members))
        for group, members in edges.items()
        if group in group_ids
    }


def _edge_rows(connector_id: str, edges: dict[str, list[str]]) -> Rows:
    names = ("group_id", "member_connector_id", "member_external_id", "member_key")
    return Rows(
        names,
        [
            (group_id, connector_id, member, member_key(member))
            for group_id, members in edges.items()
            for member in members
        ],
    )

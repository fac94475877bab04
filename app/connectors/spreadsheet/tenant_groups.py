"""The tenant's groups as an import sees them: names to match, and this connector's edges in
groups of other sources (so a re-import compares them and replace mode can remove them)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connectors.spreadsheet.columns import Field, map_columns
from app.connectors.spreadsheet.group_entries import name_key
from app.connectors.spreadsheet.group_targets import NamedGroup, foreign_key, groups_by_name
from app.connectors.spreadsheet.results import SheetReadResult
from app.db.sets import chunks, one_of
from app.directory.models import Address, Membership, Recipient
from app.directory.records import RecipientKind


async def load_tenant_groups(
    session: AsyncSession,
    *,
    tenant_id: str,
    connector_id: str,
    connectors: dict[str, str],
    sheet: SheetReadResult,
    members: dict[str, set[str]],
) -> dict[str, list[NamedGroup]]:
    """Live groups of the tenant by `name_key`, for the names the file uses; adds this
    connector's members of other connectors' groups to `members` (keyed by `foreign_key`).

    A file without a groups column says nothing about anyone's groups: those edges are then
    left out, so the import leaves members of other sources' groups as they are.
    `connectors` describes each connector id ("graph connector 'entra'") for messages."""
    rows = await session.execute(
        select(Recipient.id, Recipient.connector_id, Recipient.external_id, Recipient.display_name)
        .where(
            Recipient.tenant_id == tenant_id,
            Recipient.kind == RecipientKind.GROUP.value,
            Recipient.deleted_at.is_(None),
        )
        .order_by(Recipient.id)
    )
    groups = rows.all()
    has_groups_column = (
        Field.GROUPS in map_columns(list(sheet.headers), max_columns=len(sheet.headers) + 1).fields
    )
    foreign = [rid for rid, cid, _, _ in groups if cid != connector_id and has_groups_column]
    for chunk in chunks(session, foreign):
        edges = await session.execute(
            select(Membership.group_id, Membership.member_external_id).where(
                one_of(session, Membership.group_id, chunk),
                Membership.member_connector_id == connector_id,
            )
        )
        for gid, member in edges.all():
            members.setdefault(foreign_key(gid), set()).add(member)

    names = {name_key(n) for r in sheet.rows for n in r.group_names}
    named = [g for g in groups if g.display_name and name_key(g.display_name) in names]
    if not named:
        return {}
    primary: dict[str, str] = {}
    for chunk in chunks(session, [g.id for g in named]):
        found = await session.execute(
            select(Address.recipient_id, Address.address).where(
                one_of(session, Address.recipient_id, chunk), Address.is_primary.is_(True)
            )
        )
        primary.update(dict(found.all()))
    pairs: list[tuple[str, NamedGroup]] = []
    for rid, cid, ext, display_name in named:
        if not display_name:
            continue
        address = primary.get(rid)
        label = f"{display_name} <{address}>" if address else f"{display_name} (no address)"
        label += f" ({connectors.get(cid, 'another connector')})"
        key = ext if cid == connector_id else foreign_key(rid)
        pairs.append((display_name, NamedGroup(key, label)))
    return groups_by_name(pairs)

"""What an import compares the file against: the tenant's domains and address owners, this
connector's objects, members and held deletions, and the tenant's groups by name."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connectors.spreadsheet.plan import MirrorState, Owner, Stored
from app.connectors.spreadsheet.results import SheetReadResult
from app.connectors.spreadsheet.tenant_groups import load_tenant_groups
from app.directory.models import Address, Connector, Domain, Membership, PendingDeletion, Recipient
from app.directory.records import SourceKind

_CHUNK = 1_000


async def load_state(
    session: AsyncSession, tenant_id: str, connector_id: str, sheet: SheetReadResult
) -> MirrorState:
    """What the plan compares against. Core rows, not ORM objects: 100k-row files make the
    ORM's per-row bookkeeping the biggest cost of a re-import."""
    db = await session.connection()
    accepted = set(
        (await db.execute(select(Domain.name).where(Domain.tenant_id == tenant_id))).scalars()
    )
    authoritative = {k.value for k in SourceKind if k.is_authoritative}
    where: dict[str, tuple[str, bool]] = {}  # connector id -> (description, authoritative)
    for c in await session.scalars(select(Connector).where(Connector.tenant_id == tenant_id)):
        where[c.id] = (f"{c.kind} connector {c.name!r}", c.kind in authoritative)
    stored: dict[str, Stored] = {}
    by_id: dict[str, Stored] = {}
    ext_of: dict[str, str] = {}
    recipients = await db.execute(
        select(
            Recipient.id,
            Recipient.external_id,
            Recipient.kind,
            Recipient.display_name,
            Recipient.enabled,
            Recipient.attributes,
            Recipient.deleted_at,
        ).where(Recipient.connector_id == connector_id)
    )
    for rid, ext, kind, name, enabled, attributes, deleted_at in recipients.all():
        item = Stored(kind, name, enabled, attributes or {}, deleted_at is not None)
        stored[ext] = by_id[rid] = item
        ext_of[rid] = ext

    wanted = {a for r in sheet.rows for a in (r.email, *r.aliases, *r.groups)}
    wanted |= sheet.refused_addresses
    query = (
        select(
            Address.address,
            Address.recipient_id,
            Address.is_primary,
            Recipient.connector_id,
            Recipient.external_id,
            Recipient.kind,
            Recipient.display_name,
        )
        .join(Recipient, Recipient.id == Address.recipient_id)
        .where(Address.tenant_id == tenant_id)
    )
    tenant_addresses = await db.scalar(
        select(func.count()).select_from(Address).where(Address.tenant_id == tenant_id)
    )
    # A big file against a tenant of similar size: one scan beats thousands of IN lists, and
    # it also yields this connector's own addresses.
    whole = len(wanted) * 4 >= int(tenant_addresses or 0)
    if whole:
        batches = [query]
    else:
        batches = [query.where(Address.address.in_(c)) for c in chunks_of(sorted(wanted))]
    owners: dict[str, Owner] = {}
    owner_of: dict[str, Owner] = {}  # recipient id -> its Owner, shared by its addresses
    for batch in batches:
        for address, rid, is_primary, cid, ext, kind, name in (await db.execute(batch)).all():
            if whole and cid == connector_id:
                _add_address(by_id[rid], address, is_primary)
            if address in wanted:
                owner = owner_of.get(rid)
                if owner is None:
                    description, is_authoritative = where.get(cid, ("another connector", False))
                    owner = owner_of[rid] = Owner(
                        cid, ext, kind, f"{name or ext} ({description})", is_authoritative, rid
                    )
                owners[address] = owner
    if not whole:
        own = await db.execute(
            select(Address.recipient_id, Address.address, Address.is_primary)
            .join(Recipient, Recipient.id == Address.recipient_id)
            .where(Recipient.connector_id == connector_id)
        )
        for rid, address, is_primary in own.all():
            _add_address(by_id[rid], address, is_primary)

    members: dict[str, set[str]] = {}
    member_rows = await db.execute(
        select(Membership.group_id, Membership.member_external_id)
        .join(Recipient, Recipient.id == Membership.group_id)
        .where(
            Recipient.connector_id == connector_id,
            Recipient.deleted_at.is_(None),
            Membership.member_connector_id == connector_id,
        )
    )
    for gid, member in member_rows.all():
        members.setdefault(ext_of[gid], set()).add(member)
    by_name = await load_tenant_groups(
        session,
        tenant_id=tenant_id,
        connector_id=connector_id,
        connectors={cid: description for cid, (description, _) in where.items()},
        sheet=sheet,
        members=members,
    )
    pending = set(
        (
            await db.execute(
                select(PendingDeletion.external_id).where(
                    PendingDeletion.connector_id == connector_id
                )
            )
        ).scalars()
    )
    return MirrorState(connector_id, accepted, owners, stored, members, pending, by_name)


def _add_address(item: Stored, address: str, is_primary: bool) -> None:
    item.addresses.add(address)
    if is_primary:
        item.primary = address


def chunks_of(items: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

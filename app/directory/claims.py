"""Who owns an address: each changed recipient gets exactly its addresses, and a taken address is
settled between its owner and the claimant (the loser is recorded, never silently dropped)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.sets import chunks, one_of
from app.db.upsert import bulk_insert
from app.directory.models import Address, AddressConflict, Recipient
from app.directory.records import SourceKind
from app.directory.writes import ApplyResult, ConnectorRef, Prepared
from app.errors import Conflict

logger = logging.getLogger(__name__)


async def assign_addresses(
    session: AsyncSession,
    changed: dict[str, Prepared],
    connector: ConnectorRef,
    now: datetime,
    result: ApplyResult,
    *,
    fresh: frozenset[str] = frozenset(),
) -> list[str]:
    """Give each changed recipient exactly its addresses; settle claims on taken addresses.

    Authoritative sources (Graph, LDAP) take an address from spreadsheet/manual/learned owners;
    otherwise the first owner keeps it. Every lost claim is recorded in address_conflicts.
    Returns the ids of recipients that lost an address (their index entries must refresh).
    """
    tenant_id, own_source = connector.tenant_id, connector.kind.value
    ids = list(changed)
    stored = [rid for rid in ids if rid not in fresh]
    for chunk in chunks(session, stored):  # their claims are decided afresh below
        await session.execute(
            delete(AddressConflict)
            .where(one_of(session, AddressConflict.claimant_id, chunk))
            .execution_options(synchronize_session=False)
        )
    current: dict[str, dict[str, bool]] = {rid: {} for rid in ids}
    for chunk in chunks(session, stored):
        rows = await session.execute(
            select(Address.recipient_id, Address.address, Address.is_primary).where(
                one_of(session, Address.recipient_id, chunk)
            )
        )
        for rid, address, is_primary in rows:
            current[rid][address] = is_primary

    wanted_all = sorted({a for prep in changed.values() for a in prep.addresses})
    owners: dict[str, tuple[str, str, str | None]] = {}
    for chunk in chunks(session, wanted_all):
        owned = await session.execute(
            select(Address.address, Address.recipient_id, Recipient.source, Recipient.display_name)
            .join(Recipient, Recipient.id == Address.recipient_id)
            .where(Address.tenant_id == tenant_id, one_of(session, Address.address, chunk))
        )
        for address, rid, source, name in owned:
            owners[address] = (rid, source, name)

    removes: list[tuple[str, str]] = []
    inserts: list[dict[str, Any]] = []
    primary_flips: list[dict[str, Any]] = []
    conflicts: list[dict[str, Any]] = []
    losers: set[str] = set()
    for rid, prep in changed.items():
        wanted = {a: i == 0 for i, a in enumerate(prep.addresses)}
        for address in current[rid]:
            if address not in wanted:
                removes.append((tenant_id, address))
        for address, is_primary in wanted.items():
            if address in current[rid]:
                if current[rid][address] != is_primary:
                    primary_flips.append({"t": tenant_id, "a": address, "p": is_primary})
                continue
            owner = owners.get(address)
            if owner is not None and owner[0] != rid and owner[0] in changed:
                owner = None if address not in changed[owner[0]].addresses else owner
            if owner is None or owner[0] == rid:
                inserts.append(_address_row(tenant_id, address, rid, is_primary))
                owners[address] = (rid, own_source, prep.record.display_name)
                continue
            owner_id, owner_source, owner_name = owner
            takes_over = (
                connector.kind.is_authoritative and not SourceKind(owner_source).is_authoritative
            )
            if not takes_over and _is_strict_claim(connector):
                raise Conflict(
                    f"{address} already belongs to {owner_name or owner_id} "
                    f"(recipient {owner_id}, source {owner_source})"
                )
            result.conflicts += 1
            if takes_over:
                removes.append((tenant_id, address))
                inserts.append(_address_row(tenant_id, address, rid, is_primary))
                owners[address] = (rid, own_source, prep.record.display_name)
                losers.add(owner_id)
                conflicts.append({"address": address, "owner_id": rid, "claimant_id": owner_id})
            else:
                conflicts.append({"address": address, "owner_id": owner_id, "claimant_id": rid})

    if removes:  # primary-key deletes, executemany (a two-column IN list scans on PostgreSQL)
        table = Address.__table__
        await session.execute(
            table.delete().where(
                table.c.tenant_id == bindparam("t"), table.c.address == bindparam("a")
            ),
            [{"t": tenant_id, "a": address} for tenant_id, address in dict.fromkeys(removes)],
        )
    if inserts:
        await bulk_insert(session, Address.__table__, inserts)
    for flip in primary_flips:
        await session.execute(
            update(Address)
            .where(Address.tenant_id == flip["t"], Address.address == flip["a"])
            .values(is_primary=flip["p"])
            .execution_options(synchronize_session=False)
        )
    if conflicts:
        await _record_conflicts(session, tenant_id, conflicts, now)
    freed = {address for _, address in removes} - {row["address"] for row in inserts}
    gainers = await hand_over(session, tenant_id, freed, now=now)
    return sorted((losers | set(gainers)) - set(changed))


async def hand_over(
    session: AsyncSession, tenant_id: str, freed: set[str], *, now: datetime
) -> list[str]:
    """Give freed addresses to the recipients whose claims on them lost earlier.

    Graph sees brief conflicts while an alias moves between objects (the new owner's page can
    come before the old owner's); when the old owner lets go, the waiting claim is granted.
    Authoritative claimants come first, then the oldest claim.
    """
    if not freed:
        return []
    claims: dict[str, list[tuple[bool, int, str]]] = {}
    for chunk in chunks(session, sorted(freed)):
        rows = await session.execute(
            select(
                AddressConflict.address,
                AddressConflict.id,
                AddressConflict.claimant_id,
                Recipient.source,
            )
            .join(Recipient, Recipient.id == AddressConflict.claimant_id)
            .where(
                AddressConflict.tenant_id == tenant_id,
                one_of(session, AddressConflict.address, chunk),
                Recipient.deleted_at.is_(None),
            )
        )
        for address, conflict_id, claimant, source in rows:
            authoritative = SourceKind(source).is_authoritative
            claims.setdefault(address, []).append((not authoritative, conflict_id, claimant))
    if not claims:
        return []
    winners = {address: min(options)[2] for address, options in claims.items()}
    with_primary = set(
        await session.scalars(
            select(Address.recipient_id).where(
                Address.recipient_id.in_(set(winners.values())), Address.is_primary.is_(True)
            )
        )
    )
    for address, claimant in sorted(winners.items()):
        session.add(
            Address(
                tenant_id=tenant_id,
                address=address,
                recipient_id=claimant,
                is_primary=claimant not in with_primary,
            )
        )
        with_primary.add(claimant)
        await session.execute(
            delete(AddressConflict)
            .where(
                AddressConflict.tenant_id == tenant_id,
                AddressConflict.address == address,
                AddressConflict.claimant_id == claimant,
            )
            .execution_options(synchronize_session=False)
        )
        await session.execute(  # remaining claimants now lose to the new owner
            update(AddressConflict)
            .where(AddressConflict.tenant_id == tenant_id, AddressConflict.address == address)
            .values(owner_id=claimant)
            .execution_options(synchronize_session=False)
        )
        logger.info(
            "address handed to waiting claimant: address=%s recipient=%s", address, claimant
        )
    await session.flush()
    return sorted(set(winners.values()))


def _address_row(tenant_id: str, address: str, rid: str, is_primary: bool) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "address": address,
        "recipient_id": rid,
        "is_primary": is_primary,
    }


def _is_strict_claim(connector: ConnectorRef) -> bool:
    return connector.kind is SourceKind.MANUAL


async def _record_conflicts(
    session: AsyncSession, tenant_id: str, conflicts: list[dict[str, Any]], now: datetime
) -> None:
    for item in conflicts:
        exists = await session.scalar(
            select(func.count())
            .select_from(AddressConflict)
            .where(
                AddressConflict.tenant_id == tenant_id,
                AddressConflict.address == item["address"],
                AddressConflict.claimant_id == item["claimant_id"],
            )
        )
        if exists:
            await session.execute(
                update(AddressConflict)
                .where(
                    AddressConflict.tenant_id == tenant_id,
                    AddressConflict.address == item["address"],
                    AddressConflict.claimant_id == item["claimant_id"],
                )
                .values(owner_id=item["owner_id"])
                .execution_options(synchronize_session=False)
            )
        else:
            session.add(AddressConflict(tenant_id=tenant_id, detected_at=now, **item))
        logger.warning(
            "address conflict: address=%s owner=%s claimant=%s",
            item["address"],
            item["owner_id"],
            item["claimant_id"],
        )

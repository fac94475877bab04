"""Apply a connector's change set to the mirror: the only code that writes recipients.

Works a page at a time with set-based statements (one query per table, not per object), so a
100k-user Graph round stays within seconds. Callers own the transaction: `apply` only flushes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.sets import chunks, one_of
from app.db.upsert import Rows, bulk_insert, insert_ignore
from app.directory.addresses import normalize
from app.directory.changelog import record_changes
from app.directory.models import (
    Address,
    AddressConflict,
    Connector,
    Membership,
    Recipient,
    member_key,
    new_id,
)
from app.directory.records import ChangeSet, Edges, RecipientRecord, SourceKind
from app.errors import Conflict, InvalidInput, Malformed

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ConnectorRef:
    id: str
    tenant_id: str
    kind: SourceKind

    @classmethod
    def of(cls, connector: Connector) -> ConnectorRef:
        return cls(connector.id, connector.tenant_id, SourceKind(connector.kind))


@dataclass(slots=True)
class ApplyResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped_addresses: int = 0
    conflicts: int = 0
    recipient_ids: dict[str, str] = field(default_factory=dict)  # external id -> recipient id


@dataclass(slots=True)
class _Prepared:
    record: RecipientRecord
    addresses: list[str]  # normalized, primary first
    digest: str


def _now() -> datetime:
    return datetime.now(UTC)


def _prepare(record: RecipientRecord, *, strict: bool, result: ApplyResult) -> _Prepared:
    addresses: list[str] = []
    for raw in ([record.primary] if record.primary else []) + list(record.addresses):
        try:
            address = normalize(raw)
        except Malformed as exc:
            if strict:
                raise InvalidInput(f"{raw!r} is not a valid address: {exc.message}") from exc
            result.skipped_addresses += 1
            continue
        if address not in addresses:
            addresses.append(address)
    digest = hashlib.sha256(
        orjson.dumps(
            [
                record.kind.value,
                addresses,
                record.display_name,
                record.enabled,
                dict(record.attributes),
            ],
            option=orjson.OPT_SORT_KEYS,
        )
    ).hexdigest()
    return _Prepared(record, addresses, digest)


async def apply(
    session: AsyncSession,
    changes: ChangeSet,
    *,
    connector: ConnectorRef,
    round_id: str | None = None,
    stream: str = "",
    strict: bool = False,
    now: datetime | None = None,
) -> ApplyResult:
    """Write one page of changes; idempotent, so a replayed page changes nothing.

    `strict` (manual API): malformed addresses and address conflicts raise instead of being
    skipped and recorded.
    """
    now = now or _now()
    result = ApplyResult()
    upserted: list[str] = []
    deleted: list[str] = []
    prepared = {r.external_id: _prepare(r, strict=strict, result=result) for r in changes.upserts}
    if prepared:
        upserted = await _upsert_recipients(
            session, prepared, connector, round_id, stream, now, result
        )
    if changes.deletes:
        deleted, gainers = await _delete_recipients(
            session, changes.deletes, connector, now, result
        )
        upserted += gainers
    await _apply_memberships(session, changes, connector, result)
    for action, ids in (("upsert", upserted), ("delete", deleted)):
        if ids:
            await record_changes(
                session, connector.tenant_id, ids, action=action, source=connector.kind, at=now
            )
    await session.flush()
    return result


async def _upsert_recipients(
    session: AsyncSession,
    prepared: dict[str, _Prepared],
    connector: ConnectorRef,
    round_id: str | None,
    stream: str,
    now: datetime,
    result: ApplyResult,
) -> list[str]:
    external_ids = list(prepared)
    existing: dict[str, tuple[str, str, datetime | None]] = {}
    for chunk in chunks(session, external_ids):
        rows = await session.execute(
            select(
                Recipient.external_id, Recipient.id, Recipient.source_hash, Recipient.deleted_at
            ).where(
                Recipient.connector_id == connector.id,
                one_of(session, Recipient.external_id, chunk),
            )
        )
        for ext, rid, digest, deleted_at in rows:
            existing[ext] = (rid, digest, deleted_at)

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    seen_unchanged: list[str] = []
    changed: dict[str, _Prepared] = {}
    for ext, prep in prepared.items():
        record = prep.record
        row = {
            "kind": record.kind.value,
            "display_name": record.display_name,
            "enabled": record.enabled,
            "attributes": dict(record.attributes),
            "source_hash": prep.digest,
            "round_id": round_id,
            "stream": stream,
            "last_seen_at": now,
            "deleted_at": None,
        }
        if ext not in existing:
            rid = new_id()
            inserts.append(
                row
                | {
                    "id": rid,
                    "tenant_id": connector.tenant_id,
                    "connector_id": connector.id,
                    "source": connector.kind.value,
                    "external_id": ext,
                    "first_seen_at": now,
                }
            )
            result.added += 1
            changed[rid] = prep
        else:
            rid, digest, deleted_at = existing[ext]
            if digest == prep.digest and deleted_at is None:
                result.unchanged += 1
                seen_unchanged.append(rid)
            else:
                updates.append(row | {"id": rid})
                result.updated += 1
                changed[rid] = prep
        result.recipient_ids[ext] = rid

    if inserts:
        await bulk_insert(session, Recipient.__table__, inserts)
    if updates:
        await session.execute(
            update(Recipient).execution_options(synchronize_session=False), updates
        )
    if seen_unchanged and round_id is not None:
        for chunk in chunks(session, seen_unchanged):
            await session.execute(
                update(Recipient)
                .where(one_of(session, Recipient.id, chunk))
                .values(round_id=round_id, last_seen_at=now)
                .execution_options(synchronize_session=False)
            )
    if not changed:
        return []
    fresh = frozenset(row["id"] for row in inserts)  # new rows: no addresses, no claims yet
    losers = await _assign_addresses(session, changed, connector, now, result, fresh=fresh)
    return list(changed) + losers


async def _assign_addresses(
    session: AsyncSession,
    changed: dict[str, _Prepared],
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
    tenant_id = connector.tenant_id
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
        rows = await session.execute(
            select(Address.address, Address.recipient_id, Recipient.source, Recipient.display_name)
            .join(Recipient, Recipient.id == Address.recipient_id)
            .where(Address.tenant_id == tenant_id, one_of(session, Address.address, chunk))
        )
        for address, rid, source, name in rows:
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
                inserts.append(
                    {
                        "tenant_id": tenant_id,
                        "address": address,
                        "recipient_id": rid,
                        "is_primary": is_primary,
                    }
                )
                owners[address] = (rid, connector.kind.value, prep.record.display_name)
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
                inserts.append(
                    {
                        "tenant_id": tenant_id,
                        "address": address,
                        "recipient_id": rid,
                        "is_primary": is_primary,
                    }
                )
                owners[address] = (rid, connector.kind.value, prep.record.display_name)
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
    gainers = await _hand_over(session, tenant_id, freed, now=now)
    return sorted((losers | set(gainers)) - set(changed))


async def _hand_over(
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


async def _delete_recipients(
    session: AsyncSession,
    external_ids: list[str],
    connector: ConnectorRef,
    now: datetime,
    result: ApplyResult,
) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    for chunk in chunks(session, external_ids):
        rows = await session.scalars(
            select(Recipient.id).where(
                Recipient.connector_id == connector.id,
                one_of(session, Recipient.external_id, chunk),
                Recipient.deleted_at.is_(None),
            )
        )
        ids += list(rows)
    gainers = await soft_delete(session, ids, now=now)
    result.deleted += len(ids)
    return ids, gainers


async def soft_delete(
    session: AsyncSession, recipient_ids: Sequence[str], *, now: datetime
) -> list[str]:
    """Take recipients out of the recipient set; the row stays (deleted_at) for audit/restore.

    Returns the recipients that received a freed address (their index entries change too).
    """
    gainers: list[str] = []
    for chunk in chunks(session, list(recipient_ids)):
        freed: dict[str, set[str]] = {}
        rows = await session.execute(
            select(Address.tenant_id, Address.address).where(
                one_of(session, Address.recipient_id, chunk)
            )
        )
        for tenant_id, address in rows:
            freed.setdefault(tenant_id, set()).add(address)
        await session.execute(
            delete(Address)
            .where(one_of(session, Address.recipient_id, chunk))
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            delete(Membership)
            .where(one_of(session, Membership.group_id, chunk))
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            delete(AddressConflict)
            .where(one_of(session, AddressConflict.claimant_id, chunk))
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(Recipient)
            .where(one_of(session, Recipient.id, chunk))
            .values(deleted_at=now, source_hash="")
            .execution_options(synchronize_session=False)
        )
        for tenant_id, addresses in freed.items():
            gainers += await _hand_over(session, tenant_id, addresses, now=now)
    return sorted(set(gainers) - set(recipient_ids))


async def _apply_memberships(
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
    for chunk in chunks(session, list(replaced)):
        await session.execute(
            delete(Membership)
            .where(one_of(session, Membership.group_id, chunk))
            .execution_options(synchronize_session=False)
        )
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

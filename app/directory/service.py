"""Apply a connector's change set to the mirror: the only code that writes recipients.

Works a page at a time with set-based statements (one query per table, not per object), so a
100k-user Graph round stays within seconds. Callers own the transaction: `apply` only flushes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.sets import chunks, one_of
from app.db.upsert import bulk_insert
from app.directory.changelog import record_changes
from app.directory.claims import assign_addresses, hand_over
from app.directory.memberships import apply_memberships
from app.directory.models import Address, AddressConflict, Membership, Recipient, new_ids
from app.directory.records import ChangeSet
from app.directory.writes import ApplyResult, ConnectorRef, Prepared, prepare

__all__ = ["ApplyResult", "ConnectorRef", "apply", "soft_delete"]


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
    now = now or datetime.now(UTC)
    result = ApplyResult()
    upserted: list[str] = []
    deleted: list[str] = []
    prepared = {r.external_id: prepare(r, strict=strict, result=result) for r in changes.upserts}
    if prepared:
        upserted = await _upsert_recipients(
            session, prepared, connector, round_id, stream, now, result
        )
    if changes.deletes:
        deleted, gainers = await _delete_recipients(
            session, changes.deletes, connector, now, result
        )
        upserted += gainers
    await apply_memberships(session, changes, connector, result)
    for action, ids in (("upsert", upserted), ("delete", deleted)):
        if ids:
            await record_changes(
                session, connector.tenant_id, ids, action=action, source=connector.kind, at=now
            )
    await session.flush()
    return result


async def _upsert_recipients(
    session: AsyncSession,
    prepared: dict[str, Prepared],
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
    changed: dict[str, Prepared] = {}
    fresh_ids = iter(new_ids(sum(1 for ext in prepared if ext not in existing)))
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
            rid = next(fresh_ids)
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
    losers = await assign_addresses(session, changed, connector, now, result, fresh=fresh)
    return list(changed) + losers


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
            gainers += await hand_over(session, tenant_id, addresses, now=now)
    return sorted(set(gainers) - set(recipient_ids))

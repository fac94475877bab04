"""Learned senders (docs/contracts.md §10): count sightings and turn them into `learned` recipients.

A sighting is one message whose sender was vouched for: Postfix authenticated the client (SASL),
the client is in ROSTER_TRUSTED_NETWORKS, or a write-scoped API caller reported it. After
`min_count` sightings the address becomes a recipient of the tenant's `learned` connector,
written through `directory.service.apply` like any other source. Callers own the transaction.

Contradiction rule: an authoritative source (Graph, LDAP) contradicts a learned address when it
was seen owning the address and later no longer does (it deleted that recipient or dropped the
address from it). "Seen owning" means either a sighting found the address (or its `+tag` base)
owned by that directory recipient (remembered in `authority_id`), or the directory took the
address over from the learned recipient (the service's `address_conflicts` row). A contradicted
address is still counted and listed with the reason, its learned recipient is removed, and it is
never (re)created by later sightings; only `DELETE /v1/learned/{address}`, an operator's
decision, forgets it. Roster cannot know of a directory owner it never saw while the address was
being learned, because the mirror does not keep the addresses of deleted recipients.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.connectors.base import ChangeSet, RecipientKind, RecipientRecord, SourceKind
from app.connectors.mailflow.models import LearnedSender
from app.db.upsert import insert_ignore
from app.directory import service
from app.directory.addresses import domain_of, normalize, subaddress_base
from app.directory.models import (
    Address,
    AddressConflict,
    Change,
    Connector,
    Recipient,
    Tenant,
)
from app.directory.tenants import ensure_connector, tenant_for_domain
from app.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)


AUTHORITATIVE = [kind.value for kind in SourceKind if kind.is_authoritative]


class LearnedStatus(StrEnum):
    PENDING = "pending"  # seen fewer than min_count times
    LEARNED = "learned"  # a learned recipient answers for the address
    OWNED = "owned"  # another recipient has the address (or its +tag base): only counted
    CONTRADICTED = "contradicted"  # an authoritative source stopped vouching for it


@dataclass(frozen=True, slots=True)
class Sighting:
    address: str  # as the MTA reported it; normalized here
    evidence: str  # "sasl:<user>", "network:<client address>", "api:<note>"
    at: datetime
    count: int = 1


@dataclass(slots=True)
class Outcome:
    sender: LearnedSender
    status: LearnedStatus
    recipients_changed: bool = False  # the lookup index must refresh


@dataclass(slots=True)
class LearnedView:
    """A learned sender as the API shows it, with its status derived from the mirror now."""

    sender: LearnedSender
    tenant: str
    status: LearnedStatus
    owner_id: str | None
    owner_source: str | None
    contradiction: str | None


@dataclass(slots=True)
class _Owner:
    id: str
    source: str
    connector_kind_learned: bool


async def record(
    session: AsyncSession,
    sighting: Sighting,
    *,
    min_count: int,
    delimiter: str = "+",
    tenant_ids: frozenset[str] | None = None,
) -> Outcome:
    """Count one (aggregated) sighting and apply the learning rules; flushes, never commits.

    Raises Malformed for a junk address and InvalidInput when its domain is not accepted (to
    a caller restricted to `tenant_ids`, another tenant's domain is not accepted either).
    """
    address = normalize(sighting.address)
    tenant = await tenant_for_domain(session, domain_of(address))
    if tenant is None or (tenant_ids is not None and tenant.id not in tenant_ids):
        raise InvalidInput(
            f"{address}: domain {domain_of(address)} is not an accepted domain; "
            "only senders in accepted domains are learned"
        )
    row = await _count(session, tenant.id, address, sighting)
    now = sighting.at
    connector = await ensure_connector(session, tenant, SourceKind.LEARNED)
    owner = await _owner(session, tenant.id, address, delimiter, connector.id)

    if owner is not None and not owner.connector_kind_learned:
        if SourceKind(owner.source).is_authoritative:
            row.authority_id, row.authority_source = owner.id, owner.source
        changed = await _drop_learned_recipient(session, row, now)
        status = LearnedStatus.CONTRADICTED if row.contradicted_at else LearnedStatus.OWNED
        await session.flush()
        return Outcome(row, status, changed)

    if row.contradicted_at is None:
        reason = await _contradiction(session, row, address, delimiter)
        if reason is not None:
            row.contradicted_at, row.contradiction = now, reason
            logger.warning("learned sender contradicted: address=%s reason=%s", address, reason)
    if row.contradicted_at is not None:
        changed = await _drop_learned_recipient(session, row, now)
        await session.flush()
        return Outcome(row, LearnedStatus.CONTRADICTED, changed)

    if owner is not None:  # our own learned recipient already answers
        row.recipient_id = owner.id
        await session.flush()
        return Outcome(row, LearnedStatus.LEARNED)
    if row.count < min_count:
        await session.flush()
        return Outcome(row, LearnedStatus.PENDING)

    record_ = RecipientRecord(
        external_id=address, kind=RecipientKind.USER, addresses=(address,), primary=address
    )
    result = await service.apply(
        session,
        ChangeSet(upserts=[record_]),
        connector=service.ConnectorRef.of(connector),
        now=now,
    )
    row.recipient_id = result.recipient_ids[address]
    await session.flush()
    logger.info(
        "learned recipient created: address=%s count=%d evidence=%s",
        address,
        row.count,
        row.evidence,
    )
    return Outcome(row, LearnedStatus.LEARNED, recipients_changed=True)


async def _count(
    session: AsyncSession, tenant_id: str, address: str, sighting: Sighting
) -> LearnedSender:
    # Insert-if-missing, then an atomic increment: two replicas counting the same address at
    # once both land, on SQLite and PostgreSQL alike.
    await insert_ignore(
        session,
        LearnedSender.__table__,
        [
            {
                "tenant_id": tenant_id,
                "address": address,
                "count": 0,
                "first_seen_at": sighting.at,
                "last_seen_at": sighting.at,
                "evidence": sighting.evidence[:300],
            }
        ],
    )
    where = (LearnedSender.tenant_id == tenant_id, LearnedSender.address == address)
    await session.execute(
        update(LearnedSender)
        .where(*where)
        .values(
            count=LearnedSender.count + sighting.count,
            last_seen_at=case(
                (LearnedSender.last_seen_at < sighting.at, sighting.at),
                else_=LearnedSender.last_seen_at,
            ),
            evidence=sighting.evidence[:300],
        )
        .execution_options(synchronize_session=False)
    )
    row = await session.scalar(
        select(LearnedSender).where(*where).execution_options(populate_existing=True)
    )
    if row is None:  # pragma: no cover - the insert above guarantees the row
        raise NotFound(f"learned sender {address} vanished while it was counted")
    return row


def _candidates(address: str, delimiter: str) -> list[str]:
    base = subaddress_base(address, delimiter)
    return [address] if base is None else [address, base]


async def _owner(
    session: AsyncSession, tenant_id: str, address: str, delimiter: str, learned_connector: str
) -> _Owner | None:
    """The live recipient that owns the address, else the owner of its `+tag` base."""
    candidates = _candidates(address, delimiter)
    rows = {
        found: (rid, source, connector_id)
        for found, rid, source, connector_id in await session.execute(
            select(Address.address, Recipient.id, Recipient.source, Recipient.connector_id)
            .join(Recipient, Recipient.id == Address.recipient_id)
            .where(
                Address.tenant_id == tenant_id,
                Address.address.in_(candidates),
                Recipient.deleted_at.is_(None),
            )
        )
    }
    for candidate in candidates:
        if candidate in rows:
            rid, source, connector_id = rows[candidate]
            return _Owner(rid, source, connector_id == learned_connector)
    return None


async def _contradiction(
    session: AsyncSession, row: LearnedSender, address: str, delimiter: str
) -> str | None:
    """Why an authoritative source no longer vouches for the address, or None (see module doc)."""
    seen: list[str] = []
    if row.authority_id:
        seen.append(row.authority_id)
    if row.recipient_id:
        seen += await session.scalars(
            select(AddressConflict.owner_id).where(
                AddressConflict.claimant_id == row.recipient_id,
                AddressConflict.address.in_(_candidates(address, delimiter)),
            )
        )
    for rid in dict.fromkeys(seen):
        owner = await session.get(Recipient, rid)
        if owner is None:
            source = row.authority_source or "directory"
            return f"the {source} recipient {rid} that owned this address no longer exists"
        if not SourceKind(owner.source).is_authoritative:
            continue
        name = owner.display_name or owner.external_id
        if owner.deleted_at is not None:
            return (
                f"{owner.source} deleted {name!r} (recipient {owner.id}), which owned this "
                f"address, at {owner.deleted_at.isoformat()}"
            )
        owns = await session.scalar(
            select(func.count())
            .select_from(Address)
            .where(
                Address.recipient_id == owner.id,
                Address.address.in_(_candidates(address, delimiter)),
            )
        )
        if not owns:
            return (
                f"{owner.source} no longer lists this address on {name!r} "
                f"(recipient {owner.id}), which owned it"
            )
    if row.recipient_id:
        # The service writes an authoritative change row for a learned recipient only when a
        # directory takes its address, or hands it back after deleting the owner.
        taken = (
            await session.execute(
                select(Change.source, Change.at)
                .where(Change.recipient_id == row.recipient_id, Change.source.in_(AUTHORITATIVE))
                .order_by(Change.seq)
                .limit(1)
            )
        ).first()
        if taken is not None:
            source, at = taken
            return (
                f"{source} claimed this address from the learned recipient at "
                f"{at.isoformat()} and no longer has it"
            )
    return None


async def _drop_learned_recipient(session: AsyncSession, row: LearnedSender, now: datetime) -> bool:
    """Remove the learned recipient made for this address, if it is still live."""
    if row.recipient_id is None:
        return False
    recipient = await session.get(Recipient, row.recipient_id)
    row.recipient_id = None
    if (
        recipient is None
        or recipient.deleted_at is not None
        or recipient.source != SourceKind.LEARNED.value
    ):
        return False
    await service.apply(
        session,
        ChangeSet(deletes=[recipient.external_id]),
        connector=service.ConnectorRef(
            recipient.connector_id, recipient.tenant_id, SourceKind.LEARNED
        ),
        now=now,
    )
    logger.info("learned recipient removed: address=%s", row.address)
    return True


async def reconcile(session: AsyncSession, *, now: datetime, delimiter: str = "+") -> bool:
    """Persist contradictions found without a sighting and remove their learned recipients.

    The directory service hands a freed address back to a waiting learned claimant when the
    directory deletes the owner, so this runs periodically. Returns True if recipients changed.
    """
    touched = select(Change.recipient_id).where(Change.source.in_(AUTHORITATIVE))
    rows = list(
        await session.scalars(
            select(LearnedSender).where(
                LearnedSender.contradicted_at.is_(None),
                (LearnedSender.authority_id.is_not(None))
                | (LearnedSender.recipient_id.in_(touched)),
            )
        )
    )
    changed = False
    for row in rows:
        connector = await _learned_connector_id(session, row.tenant_id)
        owner = await _owner(session, row.tenant_id, row.address, delimiter, connector or "")
        if owner is not None and not owner.connector_kind_learned:
            continue  # the directory (or another source) answers for it: nothing to undo
        reason = await _contradiction(session, row, row.address, delimiter)
        if reason is None:
            continue
        row.contradicted_at, row.contradiction = now, reason
        logger.warning("learned sender contradicted: address=%s reason=%s", row.address, reason)
        changed = await _drop_learned_recipient(session, row, now) or changed
    await session.flush()
    return changed


async def list_learned(
    session: AsyncSession,
    *,
    delimiter: str = "+",
    status: LearnedStatus | None = None,
    limit: int = 100,
    offset: int = 0,
    tenant_ids: frozenset[str] | None = None,
) -> tuple[list[LearnedView], int]:
    """Learned senders, newest sighting first, each with its status as of now.

    A contradiction shows here as soon as the directory round that caused it commits, before
    any new sighting persists it. Filtering by status happens after derivation.
    """
    only: list[ColumnElement[bool]] = []
    if tenant_ids is not None:
        only.append(LearnedSender.tenant_id.in_(sorted(tenant_ids)))
    total = int(
        await session.scalar(select(func.count()).select_from(LearnedSender).where(*only)) or 0
    )
    query = (
        select(LearnedSender)
        .where(*only)
        .order_by(LearnedSender.last_seen_at.desc(), LearnedSender.address)
    )
    if status is None:
        query = query.limit(limit).offset(offset)
    rows = list(await session.scalars(query))
    views = await describe(session, rows, delimiter=delimiter)
    if status is not None:
        views = [v for v in views if v.status is status]
        total = len(views)
        views = views[offset : offset + limit]
    return views, total


async def describe(
    session: AsyncSession, rows: Sequence[LearnedSender], *, delimiter: str = "+"
) -> list[LearnedView]:
    """Derive each row's status: pending means "not (yet) a recipient"."""
    tenants = dict((await session.execute(select(Tenant.id, Tenant.name))).all())
    views = []
    for row in rows:
        connector = await _learned_connector_id(session, row.tenant_id)
        owner = await _owner(session, row.tenant_id, row.address, delimiter, connector or "")
        reason = row.contradiction
        if row.contradicted_at is None and (owner is None or owner.connector_kind_learned):
            reason = await _contradiction(session, row, row.address, delimiter)
        if reason is not None:
            status = LearnedStatus.CONTRADICTED
        elif owner is not None and not owner.connector_kind_learned:
            status = LearnedStatus.OWNED
        elif owner is not None:
            status = LearnedStatus.LEARNED
        else:
            status = LearnedStatus.PENDING
        views.append(
            LearnedView(
                sender=row,
                tenant=tenants.get(row.tenant_id, row.tenant_id),
                status=status,
                owner_id=owner.id if owner else None,
                owner_source=owner.source if owner else None,
                contradiction=reason,
            )
        )
    return views


async def _learned_connector_id(session: AsyncSession, tenant_id: str) -> str | None:
    """The tenant's learned connector id, without creating it (reads stay reads)."""
    return await session.scalar(
        select(Connector.id).where(
            Connector.tenant_id == tenant_id, Connector.kind == SourceKind.LEARNED.value
        )
    )


async def forget(
    session: AsyncSession,
    raw_address: str,
    *,
    now: datetime,
    tenant_ids: frozenset[str] | None = None,
) -> list[str]:
    """Delete a learned sender and its learned recipient; returns the removed recipient ids.

    This also forgets a contradiction: a later trusted sighting starts counting from zero.
    """
    address = normalize(raw_address)
    rows = list(
        await session.scalars(select(LearnedSender).where(LearnedSender.address == address))
    )
    rows = [r for r in rows if tenant_ids is None or r.tenant_id in tenant_ids]
    if not rows:
        raise NotFound(f"{address} is not a learned sender")
    removed = []
    for row in rows:
        rid = row.recipient_id
        if await _drop_learned_recipient(session, row, now) and rid:
            removed.append(rid)
        await session.delete(row)
    await session.flush()
    return removed

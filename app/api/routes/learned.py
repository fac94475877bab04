"""Learned senders: report, list and forget senders seen in authenticated outbound mail.

The policy service learns from Postfix by itself; `POST /v1/learned` is for other MTAs (Exim,
Haraka, a log shipper) that already know a sender authenticated. The schemas live here because
no other route shares them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from app.api.deps import IndexSyncDep, ReadKey, SessionDep, SettingsDep, WriteKey
from app.api.errors import responses
from app.connectors.mailflow import learning
from app.connectors.mailflow.learning import LearnedStatus, LearnedView

router = APIRouter(prefix="/v1/learned", tags=["learned"])


class LearnedCreate(BaseModel):
    address: str = Field(max_length=320, examples=["printer@contoso.com"])
    evidence: str | None = Field(
        default=None,
        max_length=200,
        description="How your MTA vouched for the sender, e.g. 'sasl:alice' or 'mx1'",
    )


class LearnedRead(BaseModel):
    address: str
    tenant: str
    status: LearnedStatus
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    evidence: str | None
    recipient_id: str | None = Field(description="the learned recipient, when one was created")
    owner_id: str | None = Field(description="the recipient that answers for the address now")
    owner_source: str | None
    contradicted_at: datetime | None
    contradiction: str | None = Field(description="why a directory source contradicts it")


class LearnedList(BaseModel):
    items: list[LearnedRead]
    total: int


def _read(view: LearnedView) -> LearnedRead:
    row = view.sender
    return LearnedRead(
        address=row.address,
        tenant=view.tenant,
        status=view.status,
        count=row.count,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        evidence=row.evidence,
        recipient_id=row.recipient_id if view.status is LearnedStatus.LEARNED else None,
        owner_id=view.owner_id,
        owner_source=view.owner_source,
        contradicted_at=row.contradicted_at,
        contradiction=view.contradiction,
    )


@router.get("", responses=responses(401, 403, 422))
async def list_learned(
    session: SessionDep,
    settings: SettingsDep,
    key: ReadKey,
    status: LearnedStatus | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=1_000_000_000),  # SQLite integers are 64-bit
) -> LearnedList:
    views, total = await learning.list_learned(
        session,
        delimiter=settings.recipient_delimiter,
        status=status,
        limit=limit,
        offset=offset,
        tenant_ids=key.tenants,
    )
    return LearnedList(items=[_read(v) for v in views], total=total)


@router.post(
    "",
    responses=responses(400, 401, 403, 413, 422, 503),
)
async def report_sender(
    body: LearnedCreate,
    session: SessionDep,
    settings: SettingsDep,
    sync: IndexSyncDep,
    key: WriteKey,
) -> LearnedRead:
    """Count one authenticated message from `address`; after ROSTER_LEARN_MIN_COUNT sightings
    the address becomes a `learned` recipient (unless another recipient already has it)."""
    evidence = f"api:{body.evidence}" if body.evidence else "api"
    sighting = learning.Sighting(body.address, evidence, datetime.now(UTC))
    outcome = await learning.record(
        session,
        sighting,
        min_count=settings.learn_min_count,
        delimiter=settings.recipient_delimiter,
        tenant_ids=key.tenants,
    )
    await session.commit()
    if outcome.recipients_changed:
        await sync.refresh_after_write()
    view = await learning.describe(
        session, [outcome.sender], delimiter=settings.recipient_delimiter
    )
    return _read(view[0])


@router.delete(
    "/{address}",
    status_code=204,
    responses=responses(400, 401, 403, 404, 503),
)
async def forget_sender(
    address: str, session: SessionDep, sync: IndexSyncDep, key: WriteKey
) -> Response:
    """Forget a learned sender and remove its learned recipient (mail to it is then rejected)."""
    removed = await learning.forget(session, address, now=datetime.now(UTC), tenant_ids=key.tenants)
    await session.commit()
    if removed:
        await sync.refresh_after_write()
    return Response(status_code=204)

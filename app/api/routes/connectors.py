"""Connector status and control: sync now, approve held deletions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from app.api.deps import AdminScope, IndexSyncDep, ReadScope, SessionDep, WriteScope
from app.api.errors import responses
from app.api.responses import JsonResponse
from app.connectors import status
from app.connectors.runner import approve_deletions
from app.connectors.worker import request_sync
from app.errors import NotFound

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])


class ConnectorStatus(BaseModel):
    id: str
    tenant: str
    name: str
    kind: str
    state: str
    first_round_done: bool
    last_success_at: datetime | None
    lag_seconds: float | None
    last_error: str | None
    last_error_at: datetime | None
    objects: int
    addresses: int
    held_deletions: int
    progress: dict[str, Any]


class ConnectorList(BaseModel):
    items: list[ConnectorStatus]


class Accepted(BaseModel):
    status: str
    detail: str


@router.get("", dependencies=[ReadScope], responses=responses(401, 403))
async def list_connectors(session: SessionDep) -> ConnectorList:
    return ConnectorList.model_validate({"items": await status.list_status(session)})


@router.post(
    "/{connector_id}/sync",
    status_code=202,
    dependencies=[WriteScope],
    responses={202: {"model": Accepted}, **responses(401, 403, 404)},
)
async def sync_now(
    connector_id: str, request: Request, session: SessionDep, full: bool = Query(default=False)
) -> JsonResponse:
    """Ask for a round now; the replica holding the connector's lease runs it."""
    connector = await status.find(session, connector_id)
    if connector is None:
        raise NotFound(f"no connector {connector_id}")
    await request_sync(session, connector.id, full=full)
    await session.commit()
    worker = getattr(request.app.state, "workers", {}).get(connector.id)
    if worker is not None:
        worker.trigger(full=full)
    return JsonResponse(
        {"status": "accepted", "detail": f"{'full' if full else 'incremental'} round requested"},
        status_code=202,
    )


@router.post(
    "/{connector_id}/approve-deletions",
    dependencies=[AdminScope],
    responses=responses(401, 403, 404),
)
async def approve(
    connector_id: str, request: Request, session: SessionDep, sync: IndexSyncDep
) -> Accepted:
    connector = await status.find(session, connector_id)
    if connector is None:
        raise NotFound(f"no connector {connector_id}")
    await session.close()
    count = await approve_deletions(request.app.state.sessionmaker, connector.id)
    await sync.refresh_after_write()
    return Accepted(status="applied", detail=f"{count} held deletions applied")

"""Connector status and control: sync now, pause and resume, run history, approve deletions.

A tenant key sees and controls only its tenants' connectors (others are 404)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from app.api.deps import AdminKey, IndexSyncDep, ReadKey, SessionDep, WriteKey
from app.api.errors import responses
from app.api.responses import JsonResponse
from app.apikeys import KeyInfo
from app.connectors import runs, status
from app.connectors.runner import approve_deletions
from app.connectors.worker import request_sync
from app.directory.models import Connector, Tenant
from app.errors import Conflict, NotFound

router = APIRouter(prefix="/v1/connectors", tags=["connectors"])


class ConnectorStatus(BaseModel):
    id: str
    tenant: str
    name: str
    kind: str
    state: str
    paused: bool
    first_round_done: bool
    last_success_at: datetime | None
    lag_seconds: float | None
    last_error: str | None
    last_error_at: datetime | None
    objects: int
    addresses: int
    held_deletions: int
    progress: dict[str, Any]
    # e.g. "domain fabrikam.com is owned by tenant fabrikam": found in the directory, not taken
    warnings: list[str] = []


class ConnectorList(BaseModel):
    items: list[ConnectorStatus]


class Accepted(BaseModel):
    status: str
    detail: str


class Run(BaseModel):
    """One round of a connector. `outcome` `error` with the error `interrupted` is a round that
    was stopped (SIGTERM) or whose process died before it ended."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    round: Literal["full", "incremental"]
    trigger: Literal["schedule", "manual", "notification", "startup"]
    outcome: Literal["success", "error", "held", "running"]
    pages: int
    objects: int
    added: int
    updated: int
    deleted: int
    held: int
    error: str | None


class RunList(BaseModel):
    items: list[Run]


async def _find(session: SessionDep, connector_id: str, key: KeyInfo) -> Connector:
    """The connector, if the key may see it: another tenant's is absent to a tenant key."""
    connector = await status.find(session, connector_id)
    if connector is None or not key.allows(connector.tenant_id):
        raise NotFound(f"no connector {connector_id}")
    return connector


@router.get("", responses=responses(401, 403))
async def list_connectors(session: SessionDep, key: ReadKey) -> ConnectorList:
    items = await status.list_status(session)
    if key.tenants is not None:
        query = select(Tenant.name).where(Tenant.id.in_(sorted(key.tenants)))
        names = set(await session.scalars(query))
        items = [item for item in items if item["tenant"] in names]
    return ConnectorList.model_validate({"items": items})


@router.post(
    "/{connector_id:path}/sync",
    status_code=202,
    responses={202: {"model": Accepted}, **responses(401, 403, 404, 409)},
)
async def sync_now(
    connector_id: str,
    request: Request,
    session: SessionDep,
    key: WriteKey,
    full: bool = Query(default=False),
) -> JsonResponse:
    """Ask for a round now (a `manual` one in its history); the replica holding the
    connector's lease runs it. `{connector_id}` is the id or `TENANT/NAME`. 409 while the
    connector is paused: a paused connector runs no round."""
    connector = await _find(session, connector_id, key)
    if connector.paused:
        raise Conflict(
            f"connector {connector_id} is paused: it runs no round; "
            f"resume it first (POST /v1/connectors/{connector_id}/resume)"
        )
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
    "/{connector_id:path}/approve-deletions",
    responses=responses(401, 403, 404),
)
async def approve(
    connector_id: str, request: Request, session: SessionDep, sync: IndexSyncDep, key: AdminKey
) -> Accepted:
    connector = await _find(session, connector_id, key)
    await session.close()
    count = await approve_deletions(request.app.state.sessionmaker, connector.id)
    await sync.refresh_after_write()
    return Accepted(status="applied", detail=f"{count} held deletions applied")


@router.get("/{connector_id:path}/runs", responses=responses(401, 403, 404, 422))
async def list_runs(
    connector_id: str,
    session: SessionDep,
    key: ReadKey,
    limit: int = Query(default=20, ge=1, le=runs.KEEP),
) -> RunList:
    """The connector's rounds, newest first (the newest 1,000 are kept).

    Every round that got the connector's lease has a row: inserted `running` when it starts,
    given its outcome when it ends (`success`; `held` when the deletion guard holds deletions
    for approval; `error` with a redacted `error`). A round stopped by SIGTERM, or whose process
    died, ends as `error` with the error `interrupted` (a dead process's row is closed by the
    connector's next round). `trigger` says what started it: `schedule`, `manual` (POST
    .../sync, `roster sync`, a spreadsheet import), `notification` (a Graph change
    notification) or `startup` (a worker's first round). `round` is `full` when any stream
    ran a full round. `{connector_id}` is the id or `TENANT/NAME`."""
    connector = await _find(session, connector_id, key)
    return RunList.model_validate({"items": await runs.newest(session, connector.id, limit=limit)})


@router.post("/{connector_id:path}/pause", responses=responses(401, 403, 404))
async def pause(connector_id: str, session: SessionDep, key: WriteKey) -> ConnectorStatus:
    """Stop running rounds (scheduled, manual, notification) until resumed; a round under way
    finishes. Every replica's worker sees it within 10 s. Lookups go on answering from the
    mirror until the tenant is stale (`max_staleness`), then answer a temporary failure, never
    a reject. Env connectors can be paused too: pausing is operational state, not config."""
    return await _set_paused(session, connector_id, key, paused=True)


@router.post("/{connector_id:path}/resume", responses=responses(401, 403, 404))
async def resume(connector_id: str, session: SessionDep, key: WriteKey) -> ConnectorStatus:
    """Run rounds again; the round missed while paused runs within 10 s."""
    return await _set_paused(session, connector_id, key, paused=False)


async def _set_paused(
    session: SessionDep, connector_id: str, key: KeyInfo, *, paused: bool
) -> ConnectorStatus:
    connector = await _find(session, connector_id, key)
    await status.set_paused(session, connector, paused)
    await session.commit()
    return ConnectorStatus.model_validate(await status.describe_one(session, connector))

"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import text

from app.api.deps import IndexDep, SessionDep
from app.api.responses import JsonResponse, error_headers
from app.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, index: IndexDep) -> PlainTextResponse:
    """Prometheus exposition: lookups by protocol and verdict, index size, tenant readiness."""
    body = request.app.state.metrics.render(index)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")


NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "not ready: send traffic elsewhere"}
}


@router.get("/readyz", responses=NOT_READY)
async def readyz(session: SessionDep, index: IndexDep) -> JsonResponse:
    """Ready = the database answers, the index is loaded, and every tenant's first sync is done."""
    detail: dict[str, object] = {}
    try:
        await session.execute(text("SELECT 1"))
        detail["database"] = "ok"
    except Exception as exc:
        detail["database"] = f"unavailable: {type(exc).__name__}"
    detail["index"] = "ok" if index.loaded and index.healthy else "unavailable"
    not_ready = sorted(t.name for t in index.tenants.values() if not t.ready)
    if not_ready:
        detail["tenants_not_ready"] = not_ready
    ok = detail["database"] == "ok" and detail["index"] == "ok" and not not_ready
    status = 200 if ok else 503
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "detail": detail},
        status_code=status,
        headers=error_headers(status),
    )

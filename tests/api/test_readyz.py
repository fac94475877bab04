"""GET /readyz: 200 only when the database answers, the index is loaded and every tenant has
finished its first sync; otherwise 503, saying which part is not ready."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from app.db.engine import create_engine, create_sessionmaker
from app.directory.models import Connector
from app.directory.records import SourceKind
from tests.conftest import one_engine
from tests.factories import make_connector


async def eventually_ready(client: httpx.AsyncClient, limit: float = 30.0) -> None:
    """Readiness follows the index poller (every 50 ms here): wait, with a generous bound."""
    deadline = time.monotonic() + limit
    while (answer := await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.05)
    assert answer.json() == {"status": "ok", "detail": {"database": "ok", "index": "ok"}}


async def test_ready_when_the_database_answers_and_no_tenant_waits(
    client: httpx.AsyncClient,
) -> None:
    await eventually_ready(client)


async def test_not_ready_before_the_first_sync_then_ready_after_it(
    client: httpx.AsyncClient, app: Any
) -> None:
    state = app.app.app.state
    async with state.sessionmaker.begin() as session:
        connector = await make_connector(
            session, SourceKind.GRAPH, tenant="contoso", name="graph", ready=False
        )
        connector_id = connector.id
    await state.index_sync.refresh()
    waiting = await client.get("/readyz")
    assert waiting.status_code == 503
    assert waiting.json() == {
        "status": "unavailable",
        "detail": {"database": "ok", "index": "ok", "tenants_not_ready": ["contoso"]},
    }

    async with state.sessionmaker.begin() as session:
        row = await session.get(Connector, connector_id)
        assert row is not None
        await make_connector(session, SourceKind.GRAPH, tenant="contoso", name="graph")
    await state.index_sync.refresh()
    await eventually_ready(client)


@one_engine  # the broken database is a SQLite file either way
async def test_not_ready_while_the_database_is_down(
    client: httpx.AsyncClient, app: Any, tmp_path: Path
) -> None:
    state = app.app.app.state
    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/roster.db")
    original = state.sessionmaker
    state.sessionmaker = create_sessionmaker(broken)
    try:
        answer = await client.get("/readyz")
    finally:
        state.sessionmaker = original
        await broken.dispose()
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["detail"]["database"].startswith("unavailable: ")
    assert body["detail"]["index"] == "ok"
    await eventually_ready(client)  # and ready again once it is back

"""A database that goes away during a request: writes answer 503 and leave nothing half-written."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from app.api.responses import RETRY_AFTER
from app.directory.models import Address, Recipient
from tests.factories import api_domain, api_key, auth


async def test_write_fails_cleanly_when_the_database_drops_mid_request(
    client: httpx.AsyncClient, app: Any
) -> None:
    key = await api_key(app, "write")
    await api_domain(client, key, "contoso.com")
    engine = app.app.app.state.engine

    def vanish(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # The recipient row is already written in this transaction when the addresses insert dies.
        if statement.lstrip().upper().startswith("INSERT INTO ADDRESSES"):
            raise OperationalError(statement, None, Exception("server closed the connection"))

    event.listen(engine.sync_engine, "before_cursor_execute", vanish)
    try:
        response = await client.post(
            "/v1/users",
            json={"email": "ann@contoso.com", "aliases": ["a@contoso.com"]},
            headers=auth(key),
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", vanish)
    assert response.status_code == 503
    assert response.json()["error"] == "DatabaseUnavailable"
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert set(response.json()) == {"error", "detail"}
    async with app.app.app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Recipient)) == 0
        assert await session.scalar(select(func.count()).select_from(Address)) == 0
    # And the same request succeeds once the database is back.
    response = await client.post("/v1/users", json={"email": "ann@contoso.com"}, headers=auth(key))
    assert response.status_code == 201

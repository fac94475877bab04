"""Bearer API keys with nested scopes; keys are stored hashed."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from app.apikeys import revoke_key
from app.directory.models import ApiKey
from tests.factories import api_key, auth


async def test_missing_or_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    for path in ("/v1/recipients/a@b.com", "/v1/users", "/v1/domains"):
        for headers in ({}, {"Authorization": "Basic abc"}, auth("rst_not_a_key")):
            response = await client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"] == "Unauthorized"


async def test_wrong_scope_is_403(client: httpx.AsyncClient, app: Any) -> None:
    lookup_key = await api_key(app, "lookup")
    response = await client.get("/v1/users", headers=auth(lookup_key))
    assert (response.status_code, response.json()["error"]) == (403, "Forbidden")
    read_key = await api_key(app, "read")
    response = await client.post("/v1/domains", json={"name": "x.com"}, headers=auth(read_key))
    assert response.status_code == 403
    # Higher scopes include lower ones.
    assert (await client.get("/v1/recipients/a@x.com", headers=auth(read_key))).status_code != 403


async def test_revoked_key_stops_working(client: httpx.AsyncClient, app: Any) -> None:
    key = await api_key(app, "admin")
    assert (await client.get("/v1/domains", headers=auth(key))).status_code == 200
    inner = app.app.app
    async with inner.state.sessionmaker.begin() as session:
        row = (await session.scalars(select(ApiKey))).one()
        assert row.key_hash != key and key not in row.key_hash
        await revoke_key(session, row.id)
    await inner.state.index_sync.refresh()
    assert (await client.get("/v1/domains", headers=auth(key))).status_code == 401
    assert (await client.get("/v1/recipients/a@b.com", headers=auth(key))).status_code == 401

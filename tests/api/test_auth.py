"""Bearer API keys with nested scopes; keys are stored hashed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.apikeys import revoke_key
from app.directory.models import ApiKey
from app.directory.records import SourceKind
from tests.factories import api_domain, api_key, auth, make_connector

SCOPES = ("lookup", "read", "write", "admin")


@dataclass(frozen=True)
class Route:
    """One call, the scope it needs, and what a key holding that scope gets back."""

    method: str
    path: str
    needs: str
    status: int
    json: Any = None

    def allowed_for(self, scope: str) -> bool:
        return SCOPES.index(scope) >= SCOPES.index(self.needs)


def routes(scope: str, connector_id: str) -> list[Route]:
    """A route per scope level; the write routes use names unique to the key's scope."""
    return [
        Route("GET", "/v1/recipients/alice@contoso.com", "lookup", 200),
        Route("POST", "/v1/recipients/lookup", "lookup", 200, {"addresses": ["a@contoso.com"]}),
        Route("GET", "/v1/recipients/alice@contoso.com/groups", "read", 200),
        Route("GET", "/v1/users", "read", 200),
        Route("GET", "/v1/groups", "read", 200),
        Route("GET", "/v1/domains", "read", 200),
        Route("GET", "/v1/changes", "read", 200),
        Route("GET", "/v1/conflicts", "read", 200),
        Route("GET", "/v1/connectors", "read", 200),
        Route("GET", "/v1/learned", "read", 200),
        Route("POST", "/v1/domains", "write", 201, {"name": f"{scope}.example"}),
        Route("POST", "/v1/users", "write", 201, {"email": f"{scope}@contoso.com"}),
        Route("POST", f"/v1/connectors/{connector_id}/sync", "write", 202),
        Route("POST", f"/v1/connectors/{connector_id}/approve-deletions", "admin", 200),
    ]


async def test_missing_or_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    for path in ("/v1/recipients/a@b.com", "/v1/users", "/v1/domains"):
        for headers in ({}, {"Authorization": "Basic abc"}, auth("rst_not_a_key")):
            response = await client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"] == "Unauthorized"


@pytest.mark.parametrize("scope", SCOPES)
async def test_each_scope_gets_exactly_its_routes_and_403_for_the_others(
    client: httpx.AsyncClient, app: Any, scope: str
) -> None:
    admin = await api_key(app, "admin")
    await api_domain(client, admin, "contoso.com")
    alice = await client.post("/v1/users", json={"email": "alice@contoso.com"}, headers=auth(admin))
    assert alice.status_code == 201, alice.text
    async with app.app.app.state.sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, name="graph")
        connector_id = connector.id
    key = await api_key(app, scope)
    for route in routes(scope, connector_id):
        response = await client.request(
            route.method, route.path, json=route.json, headers=auth(key)
        )
        if route.allowed_for(scope):
            # Higher scopes include lower ones: the route's own answer, not merely "not 403".
            assert response.status_code == route.status, (route, response.text)
        else:
            assert response.status_code == 403, (route, response.text)
            assert response.json() == {
                "error": "Forbidden",
                "detail": f"this API key lacks the {route.needs!r} scope",
            }


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

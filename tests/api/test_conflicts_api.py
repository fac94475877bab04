"""GET /v1/conflicts: an address claimed by two recipients is listed, not silently dropped."""

from __future__ import annotations

from typing import Any

import httpx

from app.directory.records import SourceKind
from tests.factories import api_domain, api_key, auth, make_connector, make_recipient


async def test_an_address_claimed_by_a_directory_and_a_manual_user_is_a_conflict(
    client: httpx.AsyncClient, app: Any
) -> None:
    key = await api_key(app, "write")
    await api_domain(client, key, "contoso.com")
    manual = await client.post(
        "/v1/users",
        json={"email": "alice@contoso.com", "aliases": ["ali@contoso.com"]},
        headers=auth(key),
    )
    assert manual.status_code == 201, manual.text
    assert (await client.get("/v1/conflicts", headers=auth(key))).json() == {"items": []}

    state = app.app.app.state
    async with state.sessionmaker.begin() as session:
        graph = await make_connector(session, SourceKind.GRAPH, name="graph")
        owner = await make_recipient(
            session, graph, external_id="g-alice", addresses=["alice@contoso.com"]
        )
    await state.index_sync.refresh()

    answer = await client.get("/v1/conflicts", headers=auth(key))
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [(i["address"], i["tenant"], i["owner_id"], i["claimant_id"]) for i in items] == [
        ("alice@contoso.com", "default", owner, manual.json()["id"])
    ]
    assert items[0]["detected_at"]
    # The directory owns the address now; the manual user keeps what nobody else claims.
    lookup = await client.get("/v1/recipients/alice@contoso.com", headers=auth(key))
    assert (lookup.json()["source"], lookup.json()["recipient_id"]) == ("graph", owner)
    alias = await client.get("/v1/recipients/ali@contoso.com", headers=auth(key))
    assert (alias.json()["source"], alias.json()["recipient_id"]) == ("manual", manual.json()["id"])


async def test_conflicts_need_the_read_scope(client: httpx.AsyncClient, app: Any) -> None:
    lookup_only = await api_key(app, "lookup")
    answer = await client.get("/v1/conflicts", headers=auth(lookup_only))
    assert answer.status_code == 403
    assert (await client.get("/v1/conflicts")).status_code == 401

"""/v1/connectors: what operators see of each connector, "sync now", approving held deletions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from app.connectors import guard
from app.directory.models import Connector
from app.directory.records import SourceKind
from tests.factories import api_domain, api_key, auth, make_connector, make_recipient

FIELDS = {
    "id", "tenant", "name", "kind", "state", "first_round_done", "last_success_at",
    "lag_seconds", "last_error", "last_error_at", "objects", "addresses", "held_deletions",
    "progress", "paused", "warnings",
}  # fmt: skip


async def graph_with_users(app: Any, count: int) -> str:
    async with app.app.app.state.sessionmaker.begin() as session:
        graph = await make_connector(session, SourceKind.GRAPH, name="graph")
        for n in range(count):
            await make_recipient(
                session, graph, external_id=f"g{n}", addresses=[f"user{n}@contoso.com"]
            )
        graph_id = graph.id
    await app.app.app.state.index_sync.refresh()
    return graph_id


async def test_the_list_shows_every_connector_with_its_counts_and_no_secret(
    client: httpx.AsyncClient, app: Any
) -> None:
    key = await api_key(app, "write")
    await api_domain(client, key, "contoso.com")
    graph_id = await graph_with_users(app, 3)
    created = await client.post(
        "/v1/users",
        json={"email": "m@contoso.com", "aliases": ["m2@contoso.com"]},
        headers=auth(key),
    )
    assert created.status_code == 201
    answer = await client.get("/v1/connectors", headers=auth(key))
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert all(set(item) == FIELDS for item in items)
    by_name = {item["name"]: item for item in items}
    graph = by_name["graph"]
    assert (graph["id"], graph["tenant"], graph["kind"], graph["state"]) == (
        graph_id, "default", "graph", "ready",
    )  # fmt: skip
    assert (graph["objects"], graph["addresses"], graph["held_deletions"]) == (3, 3, 0)
    assert graph["first_round_done"] is True and graph["lag_seconds"] >= 0
    manual = next(item for item in items if item["kind"] == "manual")
    assert (manual["objects"], manual["addresses"]) == (1, 2)
    assert "secret" not in answer.text.lower()


async def test_sync_now_records_the_request_and_answers_202(
    client: httpx.AsyncClient, app: Any
) -> None:
    key = await api_key(app, "write")
    graph_id = await graph_with_users(app, 0)
    plain = await client.post(f"/v1/connectors/{graph_id}/sync", headers=auth(key))
    assert (plain.status_code, plain.json()) == (
        202, {"status": "accepted", "detail": "incremental round requested"},
    )  # fmt: skip
    by_name = await client.post("/v1/connectors/graph/sync?full=true", headers=auth(key))
    assert (by_name.status_code, by_name.json()["detail"]) == (202, "full round requested")
    async with app.app.app.state.sessionmaker() as session:
        row = (await session.scalars(select(Connector).where(Connector.id == graph_id))).one()
        assert row.sync_requested_at is not None and row.full_sync_requested


async def test_an_unknown_connector_is_404_for_sync_and_approval(
    client: httpx.AsyncClient, app: Any
) -> None:
    key = await api_key(app, "admin")
    for action in ("sync", "approve-deletions"):
        answer = await client.post(f"/v1/connectors/nope/{action}", headers=auth(key))
        assert (answer.status_code, answer.json()) == (
            404, {"error": "NotFound", "detail": "no connector nope"},
        )  # fmt: skip


async def test_held_deletions_are_listed_and_applied_only_by_an_admin(
    client: httpx.AsyncClient, app: Any
) -> None:
    write = await api_key(app, "write")
    admin = await api_key(app, "admin")
    await api_domain(client, admin, "contoso.com")
    graph_id = await graph_with_users(app, 4)
    state = app.app.app.state
    async with state.sessionmaker.begin() as session:
        await guard.hold(session, graph_id, ["g0", "g1"], reason="removed", now=datetime.now(UTC))
        row = await session.get(Connector, graph_id)
        assert row is not None
        row.state = "needs_approval"
    listed = (await client.get("/v1/connectors", headers=auth(write))).json()["items"]
    assert [(i["held_deletions"], i["state"]) for i in listed] == [(2, "needs_approval")]
    # Held addresses keep being accepted until an admin approves.
    lookup = await client.get("/v1/recipients/user0@contoso.com", headers=auth(write))
    assert lookup.status_code == 200

    refused = await client.post(f"/v1/connectors/{graph_id}/approve-deletions", headers=auth(write))
    assert (refused.status_code, refused.json()["error"]) == (403, "Forbidden")
    approved = await client.post(
        f"/v1/connectors/{graph_id}/approve-deletions", headers=auth(admin)
    )
    assert (approved.status_code, approved.json()) == (
        200, {"status": "applied", "detail": "2 held deletions applied"},
    )  # fmt: skip
    gone = await client.get("/v1/recipients/user0@contoso.com", headers=auth(write))
    assert (gone.status_code, gone.json()["reason"]) == (404, "unknown_recipient")
    kept = await client.get("/v1/recipients/user2@contoso.com", headers=auth(write))
    assert kept.status_code == 200
    listed = (await client.get("/v1/connectors", headers=auth(write))).json()["items"]
    assert [(i["held_deletions"], i["state"], i["objects"]) for i in listed] == [(0, "ready", 2)]


async def test_listing_needs_read_and_sync_needs_write(client: httpx.AsyncClient, app: Any) -> None:
    graph_id = await graph_with_users(app, 0)
    lookup, read = await api_key(app, "lookup"), await api_key(app, "read")
    assert (await client.get("/v1/connectors", headers=auth(lookup))).status_code == 403
    assert (await client.get("/v1/connectors", headers=auth(read))).status_code == 200
    sync = await client.post(f"/v1/connectors/{graph_id}/sync", headers=auth(read))
    assert (sync.status_code, sync.json()["error"]) == (403, "Forbidden")
    assert (await client.get("/v1/connectors")).status_code == 401

"""GET /v1/connectors/{id}/runs, POST .../pause and .../resume through the full ASGI stack."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import runs
from app.connectors.runs import Counts, Outcome, Trigger
from app.directory.models import Connector
from app.directory.records import SourceKind
from tests.connectors.spreadsheet.files import csv_bytes
from tests.factories import api_key, auth, make_connector, make_domain, make_recipient


@pytest.fixture
async def keys(app: Any) -> dict[str, str]:
    return {scope: await api_key(app, scope) for scope in ("lookup", "read", "write")}


def app_sessionmaker(app: Any) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.app.app.state.sessionmaker
    return maker


@pytest.fixture
async def graph(app: Any) -> str:
    """A synced Graph connector of the default tenant with one user, alice@contoso.com."""
    async with app_sessionmaker(app).begin() as session:
        await make_domain(session, "contoso.com")
        connector = await make_connector(session, SourceKind.GRAPH, name="entra")
        await make_recipient(
            session, connector, external_id="alice", addresses=["alice@contoso.com"]
        )
        return connector.id


async def add_runs(app: Any, connector_id: str, count: int) -> list[int]:
    ids = []
    start = datetime.now(UTC) - timedelta(hours=1)
    async with app_sessionmaker(app).begin() as session:
        for number in range(count):
            at = start + timedelta(minutes=number)
            run_id = await runs.start(
                session, connector_id, full=number == 0, trigger=Trigger.SCHEDULE, now=at
            )
            await runs.finish(
                session,
                run_id,
                outcome=Outcome.SUCCESS,
                counts=Counts(pages=number, objects=10 * number),
                now=at + timedelta(seconds=5),
            )
            ids.append(run_id)
    return ids


async def test_runs_are_listed_newest_first_up_to_the_limit(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str], graph: str
) -> None:
    ids = await add_runs(app, graph, 25)
    response = await client.get(f"/v1/connectors/{graph}/runs", headers=auth(keys["read"]))
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["id"] for item in items] == ids[::-1][:20]  # default limit 20
    assert set(items[0]) == {
        "id", "started_at", "finished_at", "round", "trigger", "outcome", "pages", "objects",
        "added", "updated", "deleted", "held", "error",
    }  # fmt: skip
    assert (items[0]["pages"], items[0]["objects"], items[0]["outcome"]) == (24, 240, "success")
    assert items[-1]["round"] == "incremental"

    response = await client.get(
        "/v1/connectors/default/entra/runs", params={"limit": 3}, headers=auth(keys["read"])
    )
    assert [item["id"] for item in response.json()["items"]] == ids[::-1][:3]
    response = await client.get(
        f"/v1/connectors/{graph}/runs", params={"limit": 1000}, headers=auth(keys["read"])
    )
    assert len(response.json()["items"]) == 25
    assert response.json()["items"][-1]["round"] == "full"


@pytest.mark.parametrize("limit", [0, 1001, -1])
async def test_a_limit_out_of_range_is_422(
    client: httpx.AsyncClient, keys: dict[str, str], graph: str, limit: int
) -> None:
    response = await client.get(
        f"/v1/connectors/{graph}/runs", params={"limit": limit}, headers=auth(keys["read"])
    )
    assert response.status_code == 422


async def test_an_unknown_connector_is_404_on_every_control_route(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await client.get("/v1/connectors/nope/runs", headers=auth(keys["read"]))
    assert response.status_code == 404
    for action in ("pause", "resume"):
        response = await client.post(f"/v1/connectors/nope/{action}", headers=auth(keys["write"]))
        assert response.status_code == 404


async def test_runs_need_read_scope_and_pausing_needs_write_scope(
    client: httpx.AsyncClient, keys: dict[str, str], graph: str
) -> None:
    response = await client.get(f"/v1/connectors/{graph}/runs", headers=auth(keys["lookup"]))
    assert response.status_code == 403
    response = await client.post(f"/v1/connectors/{graph}/pause", headers=auth(keys["read"]))
    assert response.status_code == 403
    response = await client.get(f"/v1/connectors/{graph}/runs")
    assert response.status_code == 401


async def test_a_paused_connector_shows_paused_and_refuses_a_manual_sync(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str], graph: str
) -> None:
    response = await client.post("/v1/connectors/default/entra/pause", headers=auth(keys["write"]))
    assert response.status_code == 200, response.text
    assert response.json()["paused"] is True
    listed = await client.get("/v1/connectors", headers=auth(keys["read"]))
    assert [c["paused"] for c in listed.json()["items"] if c["id"] == graph] == [True]

    response = await client.post(f"/v1/connectors/{graph}/sync", headers=auth(keys["write"]))
    assert response.status_code == 409
    assert response.json()["error"] == "Conflict"
    assert "paused" in response.json()["detail"]
    async with app_sessionmaker(app)() as session:
        row = await session.get(Connector, graph)
        assert row is not None and row.sync_requested_at is None  # nothing was asked

    response = await client.post(f"/v1/connectors/{graph}/resume", headers=auth(keys["write"]))
    assert response.status_code == 200 and response.json()["paused"] is False
    listed = await client.get("/v1/connectors", headers=auth(keys["read"]))
    assert [c["paused"] for c in listed.json()["items"] if c["id"] == graph] == [False]
    response = await client.post(f"/v1/connectors/{graph}/sync", headers=auth(keys["write"]))
    assert response.status_code == 202


async def test_lookups_keep_answering_while_paused_then_defer_once_stale(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str], graph: str
) -> None:
    async def answer(address: str) -> httpx.Response:
        return await client.get(f"/v1/recipients/{address}", headers=auth(keys["lookup"]))

    async def until_status(address: str, code: int) -> None:
        for _ in range(600):  # the index poller picks up writes made beside the API (<= 30 s)
            if (await answer(address)).status_code == code:
                return
            await asyncio.sleep(0.05)

    await until_status("alice@contoso.com", 200)
    response = await client.post(f"/v1/connectors/{graph}/pause", headers=auth(keys["write"]))
    assert response.status_code == 200
    known, unknown = await answer("alice@contoso.com"), await answer("bob@contoso.com")
    assert (known.status_code, known.json()["verdict"]) == (200, "accept")
    assert (unknown.status_code, unknown.json()["verdict"]) == (404, "reject")

    # Paused for longer than max_staleness (24 h): the tenant's last success is that old.
    async with app_sessionmaker(app).begin() as session:
        row = await session.get(Connector, graph)
        assert row is not None
        row.last_success_at = datetime.now(UTC) - timedelta(hours=25)
    await until_status("bob@contoso.com", 503)
    # An address the stale mirror does not hold might exist by now: deferred, never rejected.
    response = await answer("bob@contoso.com")
    assert (response.json()["verdict"], response.json()["reason"]) == ("tempfail", "stale")
    assert (await answer("alice@contoso.com")).json()["verdict"] == "accept"


async def test_spreadsheet_imports_are_manual_rounds_in_the_history(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    write = keys["write"]
    response = await client.post("/v1/domains", json={"name": "contoso.com"}, headers=auth(write))
    assert response.status_code == 201

    async def upload(rows: list[list[str]], **params: str) -> httpx.Response:
        return await client.post(
            "/v1/imports",
            files={"file": ("people.csv", csv_bytes([["email"], *rows]), "text/csv")},
            params=params,
            headers=auth(write),
        )

    assert (await upload([["a@contoso.com"], ["b@contoso.com"]])).status_code == 200
    assert (await upload([["a@contoso.com"]], mode="replace")).status_code == 200
    assert (await upload([["c@contoso.com"]], dry_run="true")).status_code == 200  # not a round
    listed = await client.get("/v1/connectors", headers=auth(keys["read"]))
    (sheet,) = [c for c in listed.json()["items"] if c["kind"] == "spreadsheet"]
    response = await client.get(f"/v1/connectors/{sheet['id']}/runs", headers=auth(keys["read"]))
    replace, merge = response.json()["items"]
    assert (merge["trigger"], merge["round"], merge["outcome"]) == (
        "manual",
        "incremental",
        "success",
    )
    assert (merge["added"], merge["deleted"]) == (2, 0)
    assert (replace["round"], replace["added"], replace["deleted"]) == ("full", 0, 1)

"""POST /v1/graph/notifications and /v1/graph/lifecycle: handshake, clientState, inbox, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.connectors.graph.inbox import InboxWriter, WebhookReceiver
from app.connectors.graph.models import GraphSubscription, WebhookInbox
from app.connectors.graph.secrets import ClientStateCipher
from app.db.engine import create_engine, create_sessionmaker
from app.directory.records import SourceKind
from app.main import create_asgi
from app.settings import Settings
from tests.conftest import empty_tables, one_engine
from tests.factories import make_connector

SECRET = "test-secret-key-0123456789"
STATE = "the-client-state"
TOKEN = "Validation: Testing client application reachability for subscription <&>\"' +%"


@pytest.fixture
async def hooks(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    asgi = create_asgi(settings.model_copy(update={"secret_key": SecretStr(SECRET)}))
    fastapi_app = asgi.app.app
    async with (
        fastapi_app.router.lifespan_context(fastapi_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://roster.test"
        ) as client,
    ):
        client.app = fastapi_app  # type: ignore[attr-defined]
        yield client
    await empty_tables(engine)


@pytest.fixture
async def subscription(sessionmaker: async_sessionmaker[AsyncSession]) -> GraphSubscription:
    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, name="graph")
        row = GraphSubscription(
            id="sub-users-1",
            connector_id=connector.id,
            resource="/users",
            client_state_encrypted=ClientStateCipher(SecretStr(SECRET)).encrypt(
                STATE, subscription_id="sub-users-1", connector_id=connector.id
            ),
            expires_at=now + timedelta(days=2),
            created_at=now,
        )
        session.add(row)
    return row


def note(sub_id: str = "sub-users-1", state: str | None = STATE, **extra: Any) -> dict[str, Any]:
    return {
        "subscriptionId": sub_id,
        "subscriptionExpirationDateTime": "2026-12-20T11:00:00.0000000Z",
        "changeType": "updated",
        "resource": "Users/6b4f0000-0000-0000-0000-000000000001",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "id": "6b4f"},
        "clientState": state,
        "tenantId": "contoso",
    } | extra


def receiver(client: httpx.AsyncClient) -> WebhookReceiver:
    result: WebhookReceiver = client.app.state.graph_webhooks  # type: ignore[attr-defined]
    return result


async def inbox(sessionmaker: async_sessionmaker[AsyncSession]) -> list[WebhookInbox]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(WebhookInbox).order_by(WebhookInbox.id)))


@one_engine
@pytest.mark.parametrize("route", ["/v1/graph/notifications", "/v1/graph/lifecycle"])
async def test_validation_token_is_echoed_decoded_as_plain_text(
    hooks: httpx.AsyncClient, route: str
) -> None:
    answer = await hooks.post(
        f"{route}?validationToken={quote(TOKEN)}",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == TOKEN


async def test_a_verified_notification_is_stored_once_and_acknowledged(
    hooks: httpx.AsyncClient,
    subscription: GraphSubscription,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = {"value": [note()]}
    first = await hooks.post("/v1/graph/notifications", json=body)
    again = await hooks.post("/v1/graph/notifications", json=body)  # Graph's retry
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.content == b""
    rows = await inbox(sessionmaker)
    assert len(rows) == 1
    assert (rows[0].stream, rows[0].kind, rows[0].handled_at) == ("users", "change", None)
    assert rows[0].connector_id == subscription.connector_id


@pytest.mark.parametrize(
    "item",
    [
        note(state="wrong"),
        note(state=None),
        note(state=STATE + "x"),
        note(sub_id="sub-unknown"),
    ],
    ids=["wrong-state", "no-state", "longer-state", "unknown-subscription"],
)
async def test_forged_notifications_are_dropped_counted_and_answered_202(
    hooks: httpx.AsyncClient,
    subscription: GraphSubscription,
    sessionmaker: async_sessionmaker[AsyncSession],
    item: dict[str, Any],
) -> None:
    answer = await hooks.post("/v1/graph/notifications", json={"value": [item]})
    assert answer.status_code == 202
    assert await inbox(sessionmaker) == []
    assert receiver(hooks).stats.dropped == 1


async def test_each_item_is_checked_on_its_own(
    hooks: httpx.AsyncClient,
    subscription: GraphSubscription,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = {"value": [note(state="forged"), note(), "not an object", {"no": "id"}]}
    assert (await hooks.post("/v1/graph/notifications", json=body)).status_code == 202
    assert len(await inbox(sessionmaker)) == 1
    stats = receiver(hooks).stats
    assert (stats.accepted, stats.bad_client_state, stats.malformed) == (1, 1, 2)


async def test_lifecycle_events_are_stored_for_the_manager(
    hooks: httpx.AsyncClient,
    subscription: GraphSubscription,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    events = [
        {"subscriptionId": "sub-users-1", "clientState": STATE, "tenantId": "contoso",
         "subscriptionExpirationDateTime": "2026-12-20T11:00:00Z", "lifecycleEvent": event}
        for event in ("reauthorizationRequired", "subscriptionRemoved", "missed", "novel")
    ]  # fmt: skip
    answer = await hooks.post("/v1/graph/lifecycle", json={"value": events})
    assert answer.status_code == 202
    kinds = [row.kind for row in await inbox(sessionmaker)]
    assert kinds == [
        "lifecycle:reauthorize",
        "lifecycle:removed",
        "lifecycle:missed",
        "lifecycle:other",
    ]


@one_engine
@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'{"value": 3}', b"", orjson.dumps({"value": [{}] * 1001})]
)
async def test_a_body_that_is_not_a_notification_collection_is_400(
    hooks: httpx.AsyncClient, body: bytes
) -> None:
    answer = await hooks.post(
        "/v1/graph/notifications", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "Malformed"


@one_engine
async def test_oversize_bodies_are_refused(hooks: httpx.AsyncClient) -> None:
    huge = orjson.dumps({"value": [note(resource="x" * 2_000_000)]})
    answer = await hooks.post("/v1/graph/notifications", content=huge)
    assert answer.status_code == 413


@one_engine  # the broken database is a SQLite file either way
async def test_notifications_answer_503_when_the_database_is_down(
    hooks: httpx.AsyncClient, subscription: GraphSubscription, tmp_path: Path
) -> None:
    """Graph retries a 5xx for hours; a 202 for an unstored notification would lose it."""
    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/roster.db")
    rec = receiver(hooks)
    await rec.registry.resolve(["sub-users-1"])  # cached while the database was up
    original = rec.writer
    rec.writer = InboxWriter(create_sessionmaker(broken))
    try:
        answer = await hooks.post("/v1/graph/notifications", json={"value": [note()]})
    finally:
        await rec.writer.close()
        rec.writer = original
        await broken.dispose()
    assert answer.status_code == 503
    assert answer.json()["error"] == "DatabaseUnavailable"
    assert rec.stats.store_failures == 1


@one_engine
async def test_routes_need_no_api_key_and_are_documented(hooks: httpx.AsyncClient) -> None:
    spec = (await hooks.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/graph/notifications"]["post"]
    assert "text/plain" in operation["responses"]["200"]["content"]
    assert {"202", "400", "413", "503"} <= set(operation["responses"])
    assert "/v1/graph/lifecycle" in spec["paths"]


async def test_concurrent_notifications_share_commits(
    hooks: httpx.AsyncClient,
    subscription: GraphSubscription,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    import asyncio

    bodies = [{"value": [note(resource=f"Users/{i}")]} for i in range(200)]
    answers = await asyncio.gather(*(hooks.post("/v1/graph/notifications", json=b) for b in bodies))
    assert {a.status_code for a in answers} == {202}
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(WebhookInbox))
    assert count == 200
    assert receiver(hooks).writer.commits < 200

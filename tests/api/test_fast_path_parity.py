"""The documented Graph webhook routes answer exactly like the raw-ASGI fast path in front of them.

`roster serve` answers POST /v1/graph/notifications and /v1/graph/lifecycle in
`GraphWebhookFastPath`; the FastAPI routes stay in the OpenAPI document and answer when the app
runs without the wrapper. Each request goes to both, on the same state, and the answers compare.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from app.settings import Settings
from tests.conftest import one_engine

TOKEN = "Validation: Testing client application reachability for subscription <&>\"' +%"
NOTE = {
    "subscriptionId": "sub-unknown",
    "subscriptionExpirationDateTime": "2026-12-20T11:00:00.0000000Z",
    "changeType": "updated",
    "resource": "Users/6b4f0000-0000-0000-0000-000000000001",
    "clientState": "whatever",
    "tenantId": "contoso",
}
REQUESTS: list[tuple[str, str, bytes]] = [
    ("handshake-notifications", f"/v1/graph/notifications?validationToken={quote(TOKEN)}", b""),
    ("handshake-lifecycle", f"/v1/graph/lifecycle?validationToken={quote(TOKEN)}", b""),
    ("not-json", "/v1/graph/notifications", b"{nope"),
    ("empty", "/v1/graph/notifications", b""),
    ("a-list", "/v1/graph/lifecycle", b"[]"),
    ("value-not-a-list", "/v1/graph/notifications", b'{"value": 3}'),
    ("unknown-subscription", "/v1/graph/notifications", orjson.dumps({"value": [NOTE]})),
    ("too-many-items", "/v1/graph/notifications", orjson.dumps({"value": [{}] * 1001})),
]
HEADERS = ("content-type", "content-length", "retry-after")
pytestmark = one_engine  # the database only backs the app; no request here is stored


@pytest.fixture
async def documented(app: Any, fastapi_only: Any) -> AsyncIterator[httpx.AsyncClient]:
    """FastAPI's own routes, sharing the running app's state (receiver, database, index)."""
    fastapi_only.state = app.app.app.state
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fastapi_only), base_url="http://roster.test"
    ) as client:
        yield client


def seen(answer: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    return (
        answer.status_code,
        answer.content,
        {name: answer.headers[name] for name in HEADERS if name in answer.headers},
    )


@pytest.mark.parametrize(("path", "body"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
async def test_the_documented_webhook_routes_answer_like_the_fast_path(
    client: httpx.AsyncClient,
    documented: httpx.AsyncClient,
    app: Any,
    path: str,
    body: bytes,
) -> None:
    headers = {"Content-Type": "application/json"}
    receiver = app.app.app.state.graph_webhooks
    before = receiver.stats.accepted
    fast = await client.post(path, content=body, headers=headers)
    slow = await documented.post(path, content=body, headers=headers)
    assert seen(fast) == seen(slow)
    assert fast.status_code in (200, 202, 400)
    assert receiver.stats.accepted == before  # nothing here is a verified notification


async def test_an_oversize_body_is_413_on_both_paths(
    client: httpx.AsyncClient, documented: httpx.AsyncClient, settings: Settings
) -> None:
    huge = orjson.dumps({"value": [NOTE | {"resource": "x" * settings.max_body_bytes}]})
    fast = await client.post("/v1/graph/notifications", content=huge)
    slow = await documented.post("/v1/graph/notifications", content=huge)
    assert (fast.status_code, slow.status_code) == (413, 413)
    assert fast.json()["error"] == slow.json()["error"]

"""GET /v1/recipients/{address} and the batch lookup, through the full ASGI stack."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.api.responses import RETRY_AFTER
from tests.api.outages import index_cut_off
from tests.factories import api_domain, api_key, auth


@pytest.fixture
async def keys(app: Any) -> dict[str, str]:
    return {scope: await api_key(app, scope) for scope in ("lookup", "read", "write", "admin")}


@pytest.fixture
async def alice(client: httpx.AsyncClient, keys: dict[str, str]) -> dict[str, Any]:
    await api_domain(client, keys["write"], "contoso.com")
    response = await client.post(
        "/v1/users",
        json={
            "email": "Alice.Smith@contoso.com",
            "display_name": "Alice",
            "aliases": ["alice@contoso.com"],
        },
        headers=auth(keys["write"]),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_alias_with_tag_is_accepted_with_the_primary(
    client: httpx.AsyncClient, keys: dict[str, str], alice: dict[str, Any]
) -> None:
    response = await client.get(
        "/v1/recipients/ALICE+news@Contoso.com", headers=auth(keys["lookup"])
    )
    assert response.status_code == 200
    assert response.json() == {
        "address": "ALICE+news@Contoso.com",
        "valid": True,
        "verdict": "accept",
        "reason": None,
        "matched": "alice@contoso.com",
        "primary": "alice.smith@contoso.com",
        "kind": "user",
        "enabled": True,
        "recipient_id": alice["id"],
        "tenant": "default",
        "source": "manual",
    }


async def test_unknown_recipient_is_404_reject(
    client: httpx.AsyncClient, keys: dict[str, str], alice: dict[str, Any]
) -> None:
    response = await client.get("/v1/recipients/bob@contoso.com", headers=auth(keys["lookup"]))
    assert response.status_code == 404
    body = response.json()
    assert (body["valid"], body["verdict"], body["reason"]) == (
        False,
        "reject",
        "unknown_recipient",
    )
    assert body["error"] == "NotFound" and body["detail"]


async def test_foreign_domain_is_rejected_as_not_accepted(
    client: httpx.AsyncClient, keys: dict[str, str], alice: dict[str, Any]
) -> None:
    response = await client.get("/v1/recipients/alice@fabrikam.com", headers=auth(keys["lookup"]))
    assert response.status_code == 404
    assert response.json()["reason"] == "domain_not_accepted"


async def test_malformed_address_is_400(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    response = await client.get("/v1/recipients/no-at-sign", headers=auth(keys["lookup"]))
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["reason"], body["valid"]) == ("Malformed", "malformed", False)
    assert "@" in body["detail"]


async def test_the_documented_route_answers_with_the_same_bytes(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    alice: dict[str, Any],
    fastapi_only: Any,
    app: Any,
) -> None:
    # Same state, served by FastAPI's own route instead of the fast path.
    inner = app.app.app
    fastapi_only.state = inner.state
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fastapi_only), base_url="http://roster.test"
    ) as slow:
        for address in ("alice+x@contoso.com", "nobody@contoso.com", "bad", "a@other.org"):
            fast_answer = await client.get(
                f"/v1/recipients/{address}", headers=auth(keys["lookup"])
            )
            slow_answer = await slow.get(f"/v1/recipients/{address}", headers=auth(keys["lookup"]))
            assert (fast_answer.status_code, fast_answer.content) == (
                slow_answer.status_code,
                slow_answer.content,
            )
        for headers in ({}, auth("rst_wrong")):
            fast_answer = await client.get("/v1/recipients/a@contoso.com", headers=headers)
            slow_answer = await slow.get("/v1/recipients/a@contoso.com", headers=headers)
            assert fast_answer.status_code == slow_answer.status_code == 401
            assert fast_answer.json()["error"] == slow_answer.json()["error"] == "Unauthorized"


async def test_batch_lookup_answers_each_address_in_order(
    client: httpx.AsyncClient, keys: dict[str, str], alice: dict[str, Any]
) -> None:
    response = await client.post(
        "/v1/recipients/lookup",
        json={"addresses": ["alice@contoso.com", "bob@contoso.com", "junk", "x@other.org"]},
        headers=auth(keys["lookup"]),
    )
    assert response.status_code == 200
    verdicts = [(i["verdict"], i["reason"]) for i in response.json()["items"]]
    assert verdicts == [
        ("accept", None),
        ("reject", "unknown_recipient"),
        ("reject", "malformed"),
        ("reject", "domain_not_accepted"),
    ]


async def test_batch_lookup_refuses_more_than_1000(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/recipients/lookup",
        json={"addresses": ["a@b.com"] * 1001},
        headers=auth(keys["lookup"]),
    )
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidInput"


@pytest.mark.parametrize("route", ["fast path", "documented route"])
async def test_lookup_defers_with_retry_after_when_the_index_cannot_vouch(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    alice: dict[str, Any],
    app: Any,
    fastapi_only: Any,
    route: str,
) -> None:
    fastapi_only.state = app.app.app.state
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fastapi_only), base_url="http://roster.test"
    ) as slow:
        ask = client if route == "fast path" else slow
        async with index_cut_off(app):
            response = await ask.get(
                "/v1/recipients/nobody@contoso.com", headers=auth(keys["lookup"])
            )
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["verdict"], body["reason"], body["error"]) == (
        "tempfail",
        "unavailable",
        "LookupUnavailable",
    )
    assert body["detail"]


async def test_lookup_defers_when_the_database_goes_away(
    client: httpx.AsyncClient, keys: dict[str, str], alice: dict[str, Any], app: Any
) -> None:
    """The poller notices a dead database and turns rejects into tempfails."""
    import asyncio

    from app.db.engine import create_engine

    sync = app.app.app.state.index_sync
    good_engine = sync.engine
    sync.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/gone")
    try:
        for _ in range(100):
            response = await client.get(
                "/v1/recipients/nobody@contoso.com", headers=auth(keys["lookup"])
            )
            if response.status_code == 503:
                break
            await asyncio.sleep(0.02)
        assert response.status_code == 503
        assert response.json()["verdict"] == "tempfail"
        assert response.headers["retry-after"] == str(RETRY_AFTER)
    finally:
        await sync.engine.dispose()
        sync.engine = good_engine
    await sync.refresh()
    response = await client.get("/v1/recipients/nobody@contoso.com", headers=auth(keys["lookup"]))
    assert response.status_code == 404

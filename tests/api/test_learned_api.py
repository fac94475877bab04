"""/v1/learned on SQLite and PostgreSQL: other MTAs report senders; list, statuses and delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import api_domain, api_key, auth


@pytest.fixture
async def key(app: Any, client: httpx.AsyncClient) -> str:
    key = await api_key(app, "write")
    await api_domain(client, key, "contoso.com")
    return key


async def verdict(client: httpx.AsyncClient, key: str, address: str) -> str:
    answer: str = (await client.get(f"/v1/recipients/{address}", headers=auth(key))).json()[
        "verdict"
    ]
    return answer


async def report(client: httpx.AsyncClient, key: str, address: str, **extra: Any) -> httpx.Response:
    return await client.post("/v1/learned", json={"address": address, **extra}, headers=auth(key))


async def test_reported_sender_becomes_a_valid_learned_recipient(
    client: httpx.AsyncClient, key: str
) -> None:
    assert await verdict(client, key, "scanner@contoso.com") == "reject"
    reported = await report(client, key, "Scanner@Contoso.com", evidence="mx1")
    assert reported.status_code == 200, reported.text
    body = reported.json()
    assert (body["address"], body["status"], body["count"], body["evidence"]) == (
        "scanner@contoso.com",
        "learned",
        1,
        "api:mx1",
    )
    assert body["first_seen_at"].endswith(("Z", "+00:00"))
    # The writing process sees its own commit at once.
    answer = (await client.get("/v1/recipients/scanner+x@contoso.com", headers=auth(key))).json()
    assert (answer["verdict"], answer["source"]) == ("accept", "learned")

    again = (await report(client, key, "scanner@contoso.com")).json()
    assert (again["count"], again["recipient_id"]) == (2, body["recipient_id"])
    listed = (await client.get("/v1/learned", headers=auth(key))).json()
    assert listed["total"] == 1
    assert listed["items"][0]["count"] == 2


async def test_address_of_a_user_is_counted_not_duplicated(
    client: httpx.AsyncClient, key: str
) -> None:
    user = (
        await client.post("/v1/users", json={"email": "amy@contoso.com"}, headers=auth(key))
    ).json()
    body = (await report(client, key, "amy@contoso.com")).json()
    assert (body["status"], body["owner_id"], body["owner_source"], body["recipient_id"]) == (
        "owned",
        user["id"],
        "manual",
        None,
    )
    users = (await client.get("/v1/users", headers=auth(key))).json()
    assert [u["email"] for u in users["items"]] == ["amy@contoso.com"]


async def test_delete_forgets_the_sender_and_its_recipient(
    client: httpx.AsyncClient, key: str
) -> None:
    await report(client, key, "bot@contoso.com")
    assert await verdict(client, key, "bot@contoso.com") == "accept"
    deleted = await client.delete("/v1/learned/BOT@contoso.com", headers=auth(key))
    assert deleted.status_code == 204
    assert await verdict(client, key, "bot@contoso.com") == "reject"
    assert (await client.get("/v1/learned", headers=auth(key))).json()["total"] == 0
    missing = await client.delete("/v1/learned/bot@contoso.com", headers=auth(key))
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"


async def test_sender_outside_accepted_domains_is_422(client: httpx.AsyncClient, key: str) -> None:
    refused = await report(client, key, "x@gmail.com")
    assert refused.status_code == 422
    assert refused.json()["error"] == "InvalidInput"
    malformed = await report(client, key, "no-at-sign")
    assert malformed.status_code == 400


async def test_list_filters_by_status(client: httpx.AsyncClient, key: str) -> None:
    await client.post("/v1/users", json={"email": "owner@contoso.com"}, headers=auth(key))
    await report(client, key, "owner@contoso.com")
    await report(client, key, "new@contoso.com")
    learned = (await client.get("/v1/learned?status=learned", headers=auth(key))).json()
    assert [i["address"] for i in learned["items"]] == ["new@contoso.com"]
    bad = await client.get("/v1/learned?status=nope", headers=auth(key))
    assert bad.status_code == 422


async def test_scopes_are_enforced(app: Any, client: httpx.AsyncClient, key: str) -> None:
    reader = await api_key(app, "read")
    lookup_only = await api_key(app, "lookup")
    assert (await client.get("/v1/learned", headers=auth(reader))).status_code == 200
    assert (await client.get("/v1/learned", headers=auth(lookup_only))).status_code == 403
    assert (await report(client, reader, "r@contoso.com")).status_code == 403
    assert (await client.delete("/v1/learned/r@contoso.com", headers=auth(reader))).status_code == (
        403
    )
    assert (await client.post("/v1/learned", json={"address": "r@contoso.com"})).status_code == 401

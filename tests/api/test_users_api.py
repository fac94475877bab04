"""Manual users and their aliases, and every bad input the issue names."""

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


async def create(client: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    return await client.post("/v1/users", json=body, headers=auth(key))


async def lookup(client: httpx.AsyncClient, key: str, address: str) -> str:
    verdict: str = (await client.get(f"/v1/recipients/{address}", headers=auth(key))).json()[
        "verdict"
    ]
    return verdict


async def test_create_read_update_delete(client: httpx.AsyncClient, key: str) -> None:
    created = await create(
        client,
        key,
        email="bob@contoso.com",
        display_name="Bob",
        aliases=["Robert@Contoso.com"],
        attributes={"department": "Sales"},
    )
    assert created.status_code == 201
    user = created.json()
    assert (user["email"], user["aliases"], user["source"]) == (
        "bob@contoso.com",
        ["robert@contoso.com"],
        "manual",
    )
    assert (await client.get(f"/v1/users/{user['id']}", headers=auth(key))).json() == user
    listed = (await client.get("/v1/users", headers=auth(key))).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == user["id"]

    patched = await client.patch(
        f"/v1/users/{user['id']}",
        json={"aliases": ["bobby@contoso.com"], "enabled": False},
        headers=auth(key),
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["aliases"], patched.json()["enabled"]) == (["bobby@contoso.com"], False)
    assert await lookup(client, key, "robert@contoso.com") == "reject"
    assert await lookup(client, key, "bobby@contoso.com") == "accept"

    assert (await client.delete(f"/v1/users/{user['id']}", headers=auth(key))).status_code == 204
    assert await lookup(client, key, "bob@contoso.com") == "reject"
    again = await client.delete(f"/v1/users/{user['id']}", headers=auth(key))
    assert (again.status_code, again.json()["error"]) == (404, "NotFound")


async def test_alias_owned_by_another_recipient_is_409_naming_the_owner(
    client: httpx.AsyncClient, key: str
) -> None:
    first = (await create(client, key, email="carol@contoso.com", display_name="Carol")).json()
    response = await create(client, key, email="dave@contoso.com", aliases=["carol@contoso.com"])
    assert response.status_code == 409
    assert response.json()["error"] == "Conflict"
    assert "Carol" in response.json()["detail"] and first["id"] in response.json()["detail"]
    # Nothing half-written: dave does not exist.
    assert await lookup(client, key, "dave@contoso.com") == "reject"
    assert (await client.get("/v1/users", headers=auth(key))).json()["total"] == 1


async def test_address_in_a_domain_that_is_not_accepted_is_refused(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await create(client, key, email="erin@fabrikam.com")
    assert response.status_code == 422
    assert "fabrikam.com" in response.json()["detail"]
    assert "POST /v1/domains" in response.json()["detail"]


async def test_malformed_address_is_400(client: httpx.AsyncClient, key: str) -> None:
    response = await create(client, key, email="frank@contoso.com", aliases=["not an address"])
    assert (response.status_code, response.json()["error"]) == (400, "Malformed")
    assert "not an address" in response.json()["detail"]


async def test_unknown_json_fields_are_refused(client: httpx.AsyncClient, key: str) -> None:
    response = await create(client, key, email="gina@contoso.com", password="hunter2")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "InvalidInput" and "password" in body["detail"]
    assert "hunter2" not in response.text


async def test_oversize_body_is_413_and_applies_nothing(
    client: httpx.AsyncClient, key: str
) -> None:
    huge = {"email": "hank@contoso.com", "attributes": {"blob": "x" * 2_000_000}}
    response = await create(client, key, **huge)
    assert (response.status_code, response.json()["error"]) == (413, "PayloadTooLarge")
    assert await lookup(client, key, "hank@contoso.com") == "reject"


async def test_users_from_a_directory_cannot_be_edited_here(
    client: httpx.AsyncClient, key: str, app: Any
) -> None:
    from app.directory.records import SourceKind
    from tests.factories import make_connector, make_recipient

    async with app.app.app.state.sessionmaker.begin() as session:
        graph = await make_connector(session, SourceKind.GRAPH)
        rid = await make_recipient(session, graph, external_id="g1", addresses=["ivy@contoso.com"])
    response = await client.delete(f"/v1/users/{rid}", headers=auth(key))
    assert response.status_code == 409 and "graph" in response.json()["detail"]

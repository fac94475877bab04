"""Groups with direct and nested members; cycles are legal and must not hang."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import api_domain, api_key, auth


@pytest.fixture
async def key(app: Any, client: httpx.AsyncClient) -> str:
    key = await api_key(app, "write")
    await api_domain(client, key, "contoso.com")
    for name in ("ann", "ben"):
        response = await client.post(
            "/v1/users", json={"email": f"{name}@contoso.com"}, headers=auth(key)
        )
        assert response.status_code == 201
    return key


async def make_group(
    client: httpx.AsyncClient, key: str, email: str, members: list[str]
) -> dict[str, Any]:
    response = await client.post(
        "/v1/groups",
        json={"display_name": email.split("@")[0], "email": email, "members": members},
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    group: dict[str, Any] = response.json()
    return group


def emails(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["email"] for item in response.json()["items"]}


async def test_nested_groups_with_a_cycle(client: httpx.AsyncClient, key: str) -> None:
    inner = await make_group(client, key, "inner@contoso.com", ["ben@contoso.com"])
    outer = await make_group(client, key, "outer@contoso.com", ["ann@contoso.com", inner["id"]])
    # Close the cycle: inner contains outer.
    response = await client.post(
        f"/v1/groups/{inner['id']}/members", json={"member": outer["id"]}, headers=auth(key)
    )
    assert response.status_code == 204
    direct = await client.get(f"/v1/groups/{outer['id']}/members", headers=auth(key))
    assert emails(direct) == {"ann@contoso.com", "inner@contoso.com"}
    nested = await client.get(
        f"/v1/groups/{outer['id']}/members?transitive=true", headers=auth(key)
    )
    assert emails(nested) == {"ann@contoso.com", "inner@contoso.com", "ben@contoso.com"}
    of_ben = await client.get(
        "/v1/recipients/ben@contoso.com/groups?transitive=true", headers=auth(key)
    )
    assert emails(of_ben) == {"inner@contoso.com", "outer@contoso.com"}
    of_ben_direct = await client.get("/v1/recipients/ben@contoso.com/groups", headers=auth(key))
    assert emails(of_ben_direct) == {"inner@contoso.com"}
    listed = await client.get("/v1/groups", headers=auth(key))
    assert emails(listed) == {"inner@contoso.com", "outer@contoso.com"}
    lookup = await client.get("/v1/recipients/outer@contoso.com", headers=auth(key))
    assert lookup.json()["kind"] == "group"


async def test_deleting_a_group_that_is_a_member_of_another_is_refused(
    client: httpx.AsyncClient, key: str
) -> None:
    inner = await make_group(client, key, "inner@contoso.com", [])
    outer = await make_group(client, key, "outer@contoso.com", [inner["id"]])
    response = await client.delete(f"/v1/groups/{inner['id']}", headers=auth(key))
    assert response.status_code == 409
    assert "outer" in response.json()["detail"]
    removed = await client.delete(
        f"/v1/groups/{outer['id']}/members/{inner['id']}", headers=auth(key)
    )
    assert removed.status_code == 204
    assert (await client.delete(f"/v1/groups/{inner['id']}", headers=auth(key))).status_code == 204
    assert (await client.get(f"/v1/groups/{inner['id']}", headers=auth(key))).status_code == 404


async def test_unknown_member_is_404(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post(
        "/v1/groups",
        json={"display_name": "g", "email": "g@contoso.com", "members": ["zed@contoso.com"]},
        headers=auth(key),
    )
    assert response.status_code == 404 and "zed@contoso.com" in response.json()["detail"]

"""/v1/tenants through the full ASGI stack: what an operator managing tenants sees."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.directory.records import SourceKind
from tests.factories import api_key, auth, make_connector


@pytest.fixture
async def keys(app: Any) -> dict[str, str]:
    return {scope: await api_key(app, scope) for scope in ("lookup", "read", "write", "admin")}


async def add_tenant(client: httpx.AsyncClient, admin: str, name: str, **body: Any) -> Any:
    response = await client.post("/v1/tenants", json={"name": name, **body}, headers=auth(admin))
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_tenant_is_created_listed_changed_and_removed(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    created = await add_tenant(client, keys["admin"], "fabrikam", display_name="Fabrikam Ltd")
    assert set(created) == {"id", "name", "display_name", "created_at", "policy"}
    assert (created["name"], created["display_name"]) == ("fabrikam", "Fabrikam Ltd")
    assert created["policy"] == {
        "reject_disabled": None,
        "max_staleness": None,
        "delete_threshold": None,
        "delete_threshold_percent": None,
    }
    listed = (await client.get("/v1/tenants", headers=auth(keys["read"]))).json()["items"]
    assert [t["name"] for t in listed] == ["default", "fabrikam"]
    shown = await client.get("/v1/tenants/fabrikam", headers=auth(keys["read"]))
    assert shown.json() == created

    changed = await client.patch(
        "/v1/tenants/fabrikam",
        json={"policy": {"reject_disabled": True, "delete_threshold": 10}},
        headers=auth(keys["admin"]),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "Fabrikam Ltd"  # not given: kept
    assert changed.json()["policy"]["reject_disabled"] is True
    again = await client.patch(
        "/v1/tenants/fabrikam",
        json={"display_name": "Fabrikam", "policy": {"delete_threshold": None}},
        headers=auth(keys["admin"]),
    )
    policy = again.json()["policy"]
    assert again.json()["display_name"] == "Fabrikam"
    assert (policy["reject_disabled"], policy["delete_threshold"]) == (True, None)

    removed = await client.delete("/v1/tenants/fabrikam", headers=auth(keys["admin"]))
    assert removed.status_code == 204
    gone = await client.get("/v1/tenants/fabrikam", headers=auth(keys["read"]))
    assert gone.status_code == 404 and "fabrikam" in gone.json()["detail"]


@pytest.mark.parametrize("name", ["Fabrikam", "fab rikam", "-fab", "fab_rikam", "", "x" * 64])
async def test_a_tenant_name_that_is_not_a_lower_case_slug_is_refused(
    client: httpx.AsyncClient, keys: dict[str, str], name: str
) -> None:
    response = await client.post("/v1/tenants", json={"name": name}, headers=auth(keys["admin"]))
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("name:")
    listed = (await client.get("/v1/tenants", headers=auth(keys["read"]))).json()["items"]
    assert [t["name"] for t in listed] == ["default"]


async def test_a_policy_value_out_of_range_is_refused_naming_the_field(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/tenants",
        json={"name": "fabrikam", "policy": {"max_staleness": -1}},
        headers=auth(keys["admin"]),
    )
    assert response.status_code == 422
    assert "policy.max_staleness" in response.json()["detail"]
    unknown = await client.post(
        "/v1/tenants",
        json={"name": "fabrikam", "policy": {"reject_everything": True}},
        headers=auth(keys["admin"]),
    )
    assert unknown.status_code == 422 and "reject_everything" in unknown.json()["detail"]


async def test_a_second_tenant_of_the_same_name_is_a_conflict(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    first = await add_tenant(client, keys["admin"], "fabrikam")
    response = await client.post(
        "/v1/tenants", json={"name": "fabrikam"}, headers=auth(keys["admin"])
    )
    assert response.status_code == 409 and "fabrikam" in response.json()["detail"]
    listed = (await client.get("/v1/tenants", headers=auth(keys["read"]))).json()["items"]
    assert [t["id"] for t in listed if t["name"] == "fabrikam"] == [first["id"]]


async def test_a_tenant_with_domains_or_connectors_is_not_removed(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str]
) -> None:
    await add_tenant(client, keys["admin"], "fabrikam")
    domain = await client.post(
        "/v1/domains",
        json={"name": "fabrikam.com", "tenant": "fabrikam"},
        headers=auth(keys["write"]),
    )
    assert domain.status_code == 201
    async with app.app.app.state.sessionmaker.begin() as session:
        await make_connector(session, SourceKind.GRAPH, tenant="fabrikam", name="fabrikam-entra")

    refused = await client.delete("/v1/tenants/fabrikam", headers=auth(keys["admin"]))
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "fabrikam.com" in detail and "fabrikam-entra" in detail
    await client.delete("/v1/domains/fabrikam.com", headers=auth(keys["write"]))
    still = await client.delete("/v1/tenants/fabrikam", headers=auth(keys["admin"]))
    assert still.status_code == 409
    assert (
        "fabrikam-entra" in still.json()["detail"] and "fabrikam.com" not in still.json()["detail"]
    )
    kept = await client.get("/v1/tenants/fabrikam", headers=auth(keys["read"]))
    assert kept.status_code == 200


async def test_the_default_tenant_cannot_be_removed(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    changed = await client.patch(
        "/v1/tenants/default", json={"display_name": "Us"}, headers=auth(keys["admin"])
    )
    assert changed.status_code == 200  # the default tenant exists on first use
    response = await client.delete("/v1/tenants/default", headers=auth(keys["admin"]))
    assert response.status_code == 409 and "default" in response.json()["detail"]
    assert (await client.get("/v1/tenants/default", headers=auth(keys["read"]))).status_code == 200


async def test_unknown_tenants_answer_404(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    admin = auth(keys["admin"])
    assert (await client.patch("/v1/tenants/nobody", json={}, headers=admin)).status_code == 404
    assert (await client.delete("/v1/tenants/nobody", headers=admin)).status_code == 404


async def test_reading_tenants_needs_read_and_changing_them_needs_admin(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    assert (await client.get("/v1/tenants")).status_code == 401
    assert (await client.get("/v1/tenants", headers=auth(keys["lookup"]))).status_code == 403
    assert (await client.get("/v1/tenants", headers=auth(keys["read"]))).status_code == 200
    for scope in ("read", "write"):
        denied = await client.post("/v1/tenants", json={"name": "x"}, headers=auth(keys[scope]))
        assert denied.status_code == 403 and "admin" in denied.json()["detail"]
    await add_tenant(client, keys["admin"], "x")
    patch = await client.patch("/v1/tenants/x", json={}, headers=auth(keys["write"]))
    assert patch.status_code == 403
    assert (await client.delete("/v1/tenants/x", headers=auth(keys["write"]))).status_code == 403


async def test_a_domain_belongs_to_one_tenant(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    write = auth(keys["write"])
    missing = await client.post(
        "/v1/domains", json={"name": "a.com", "tenant": "nobody"}, headers=write
    )
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    await add_tenant(client, keys["admin"], "t1")
    await add_tenant(client, keys["admin"], "t2")
    first = await client.post("/v1/domains", json={"name": "a.com", "tenant": "t1"}, headers=write)
    assert first.status_code == 201 and first.json()["tenant"] == "t1"
    second = await client.post("/v1/domains", json={"name": "A.com", "tenant": "t2"}, headers=write)
    assert second.status_code == 409 and "t1" in second.json()["detail"]
    default = await client.post("/v1/domains", json={"name": "b.com"}, headers=write)
    assert default.status_code == 201 and default.json()["tenant"] == "default"
    listed = (await client.get("/v1/domains", headers=write)).json()["items"]
    assert {(d["name"], d["tenant"]) for d in listed} == {("a.com", "t1"), ("b.com", "default")}


async def test_openapi_documents_the_tenant_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"get", "post"} <= set(paths["/v1/tenants"])
    assert {"get", "patch", "delete"} <= set(paths["/v1/tenants/{name}"])
    assert "409" in paths["/v1/tenants/{name}"]["delete"]["responses"]
    assert "409" in paths["/v1/tenants"]["post"]["responses"]


async def test_a_removed_tenant_leaves_the_readiness_metrics(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    await add_tenant(client, keys["admin"], "fabrikam")
    assert 'roster_tenant_ready{tenant="fabrikam"} 1' in (await client.get("/metrics")).text
    await client.delete("/v1/tenants/fabrikam", headers=auth(keys["admin"]))
    metrics = (await client.get("/metrics")).text
    assert 'tenant="fabrikam"' not in metrics and 'roster_tenant_ready{tenant="default"}' in metrics

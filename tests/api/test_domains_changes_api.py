from __future__ import annotations

from typing import Any

import httpx

from tests.factories import api_key, auth


async def test_domains_route_lookups_and_can_be_removed(
    client: httpx.AsyncClient, app: Any
) -> None:
    key = await api_key(app, "write")
    response = await client.post("/v1/domains", json={"name": "Bücher.Example"}, headers=auth(key))
    assert response.status_code == 201
    assert response.json()["name"] == "xn--bcher-kva.example"
    listed = (await client.get("/v1/domains", headers=auth(key))).json()["items"]
    assert [d["name"] for d in listed] == ["xn--bcher-kva.example"]
    user = await client.post("/v1/users", json={"email": "max@bücher.example"}, headers=auth(key))
    assert user.status_code == 201
    assert (
        await client.get("/v1/recipients/MAX@Bücher.example", headers=auth(key))
    ).status_code == 200
    assert (await client.delete("/v1/domains/bücher.example", headers=auth(key))).status_code == 204
    answer = await client.get("/v1/recipients/max@bücher.example", headers=auth(key))
    assert answer.json()["reason"] == "domain_not_accepted"
    missing = await client.delete("/v1/domains/never.example", headers=auth(key))
    assert missing.status_code == 404


async def test_domain_of_another_tenant_is_a_conflict(client: httpx.AsyncClient, app: Any) -> None:
    key = await api_key(app, "write")
    admin = await api_key(app, "admin")
    for tenant in ("t1", "t2"):
        await client.post("/v1/tenants", json={"name": tenant}, headers=auth(admin))
    assert (
        await client.post("/v1/domains", json={"name": "a.com", "tenant": "t1"}, headers=auth(key))
    ).status_code == 201
    response = await client.post(
        "/v1/domains", json={"name": "a.com", "tenant": "t2"}, headers=auth(key)
    )
    assert response.status_code == 409


async def test_change_feed_pages_by_sequence(client: httpx.AsyncClient, app: Any) -> None:
    key = await api_key(app, "write")
    await client.post("/v1/domains", json={"name": "c.com"}, headers=auth(key))
    created = (await client.post("/v1/users", json={"email": "a@c.com"}, headers=auth(key))).json()
    await client.delete(f"/v1/users/{created['id']}", headers=auth(key))
    feed = (await client.get("/v1/changes?since=0", headers=auth(key))).json()
    actions = [(i["action"], i["recipient_id"]) for i in feed["items"]]
    assert actions == [("domain", None), ("upsert", created["id"]), ("delete", created["id"])]
    assert feed["next"] == feed["items"][-1]["seq"]
    later = (await client.get(f"/v1/changes?since={feed['next']}", headers=auth(key))).json()
    assert later == {"items": [], "next": feed["next"]}


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text


async def test_openapi_documents_the_lookup_answers(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    lookup = spec["paths"]["/v1/recipients/{address}"]["get"]
    assert {"200", "400", "401", "403", "404", "503"} <= set(lookup["responses"])
    assert (await client.get("/docs")).status_code == 200


async def test_metrics_count_lookups_by_verdict(client: httpx.AsyncClient, app: Any) -> None:
    key = await api_key(app, "write")
    await client.post("/v1/domains", json={"name": "m.com"}, headers=auth(key))
    for address in ("nobody@m.com", "x@other.org", "bad"):
        await client.get(f"/v1/recipients/{address}", headers=auth(key))
    text = (await client.get("/metrics")).text
    assert 'roster_lookups_total{protocol="http",verdict="reject"} 3' in text
    assert 'roster_tenant_ready{tenant="default"} 1' in text
    assert "roster_index_healthy 1" in text

"""Tenant-restricted API keys through the full ASGI stack: a key of fabrikam sees nothing of
contoso on any route, and its lookups answer only for fabrikam's domains."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from app.apikeys import create_key
from app.directory.records import SourceKind
from tests.connectors.spreadsheet.files import csv_bytes
from tests.factories import api_key, auth, make_connector

# Routes a gateway or Graph calls without a Roster key: no tenant to restrict.
KEYLESS = {"/healthz", "/metrics", "/readyz", "/v1/graph/notifications", "/v1/graph/lifecycle"}


async def tenant_key(app: Any, tenants: list[str], *scopes: str) -> str:
    async with app.app.app.state.sessionmaker.begin() as session:
        _, key = await create_key(session, f"key-{'-'.join(tenants)}", list(scopes), tenants)
        return key


async def created(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def lookup(client: httpx.AsyncClient, key: str, address: str) -> httpx.Response:
    return await client.get(f"/v1/recipients/{address}", headers=auth(key))


async def accepted(client: httpx.AsyncClient, key: str, address: str) -> None:
    """Poll (generously) until the index has caught up with a write."""
    for _ in range(200):
        if (await lookup(client, key, address)).json().get("verdict") == "accept":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{address} never accepted")


@pytest.fixture
async def world(app: Any, client: httpx.AsyncClient) -> dict[str, Any]:
    """contoso (the victim) with one of each object, fabrikam (the tenant of the key)."""
    admin = await api_key(app, "admin")
    h = auth(admin)
    for name in ("contoso", "fabrikam"):
        await created(await client.post("/v1/tenants", json={"name": name}, headers=h))
        body = {"name": f"{name}.example", "tenant": name}
        await created(await client.post("/v1/domains", json=body, headers=h))
    alice = await created(
        await client.post("/v1/users", json={"email": "alice@contoso.example"}, headers=h)
    )
    bob = await created(
        await client.post("/v1/users", json={"email": "bob@fabrikam.example"}, headers=h)
    )
    group = await created(
        await client.post(
            "/v1/groups",
            json={
                "display_name": "Staff",
                "email": "staff@contoso.example",
                "members": [alice["id"]],
            },
            headers=h,
        )
    )
    learned = {"address": "printer@contoso.example"}
    await created(await client.post("/v1/learned", json=learned, headers=h))
    upload = await client.post(
        "/v1/imports",
        files={"file": ("p.csv", csv_bytes([["email"], ["carol@contoso.example"]]), "text/csv")},
        headers=h,
    )
    report = await created(upload)
    async with app.app.app.state.sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, tenant="contoso")
        connector_id = connector.id
    await app.app.app.state.index_sync.refresh_after_write()
    await accepted(client, admin, "alice@contoso.example")
    await accepted(client, admin, "bob@fabrikam.example")
    return {
        "admin": admin,
        "alice": alice["id"],
        "bob": bob["id"],
        "group": group["id"],
        "connector": connector_id,
        "import": report["id"],
        "fabrikam_admin": await tenant_key(app, ["fabrikam"], "admin"),
    }


def path_for(path: str, world: dict[str, Any]) -> str:
    """Fill a route's parameters with contoso's objects."""
    values = {
        "address": "alice@contoso.example",
        "user_id": world["alice"],
        "group_id": world["group"],
        "member": world["alice"],
        "connector_id": world["connector"],
        "import_id": world["import"],
        "key_id": "does-not-matter",
        "name": "contoso.example" if path.startswith("/v1/domains") else "contoso",
    }
    if path.startswith("/v1/learned"):
        values["address"] = "printer@contoso.example"
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/recipients/lookup"): {"addresses": ["alice@contoso.example"]},
    ("POST", "/v1/users"): {"email": "mallory@contoso.example"},
    ("PATCH", "/v1/users/{user_id}"): {"display_name": "pwned"},
    ("POST", "/v1/groups"): {"display_name": "X", "email": "x@contoso.example"},
    ("POST", "/v1/groups/{group_id}/members"): {"member": "bob@fabrikam.example"},
    ("POST", "/v1/domains"): {"name": "new.example", "tenant": "contoso"},
    ("POST", "/v1/tenants"): {"name": "mallory"},
    ("PATCH", "/v1/tenants/{name}"): {"display_name": "pwned"},
    ("POST", "/v1/learned"): {"address": "spoof@contoso.example"},
    ("POST", "/v1/auth/verify"): {"username": "alice@contoso.example", "password": "x"},
    ("POST", "/v1/apikeys"): {"name": "wider", "scopes": ["admin"]},
}


# Objects whose tenant is the domain of their address: the 422 an unaccepted domain gets.
CREATED_BY_ADDRESS = {("POST", "/v1/users"), ("POST", "/v1/groups")}
IMPORTED = {("POST", "/v1/imports")}  # a file in contoso's domain: refused, contoso unnamed
SEEN_BY_ADDRESS = {("POST", "/v1/learned")}  # a sighting in contoso's domain: not accepted


async def call(
    client: httpx.AsyncClient, method: str, path: str, world: dict[str, Any], key: str
) -> httpx.Response:
    url = path_for(path, world)
    if (method, path) == ("POST", "/v1/imports"):
        content = csv_bytes([["email"], ["mallory@contoso.example"]])
        files = {"file": ("m.csv", content, "text/csv")}
        return await client.post(url, files=files, headers=auth(key))
    body = BODIES.get((method, path))
    return await client.request(method, url, json=body, headers=auth(key))


async def test_every_route_answers_a_key_of_another_tenant_as_if_contoso_were_absent(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    routes = (await client.get("/openapi.json")).json()["paths"]
    key = world["fabrikam_admin"]
    seen = 0
    for path, operations in routes.items():
        if path in KEYLESS:
            continue
        for method in operations:
            method = method.upper()
            response = await call(client, method, path, world, key)
            seen += 1
            where = f"{method} {path}: {response.status_code} {response.text}"
            if path == "/v1/recipients/{address}":
                assert response.status_code == 404, where
                assert response.json()["reason"] == "domain_not_accepted", where
            elif path == "/v1/recipients/lookup":
                assert response.status_code == 200, where
                [item] = response.json()["items"]
                assert (item["verdict"], item["reason"]) == ("reject", "domain_not_accepted")
            elif (method, path) in CREATED_BY_ADDRESS:
                # contoso's domain is, to this key, a domain nobody accepted
                assert response.status_code == 422, where
                detail = response.json()["detail"]
                assert "is not an accepted domain (accepted: fabrikam.example;" in detail, where
            elif (method, path) in IMPORTED:
                assert response.status_code == 422, where
                detail = response.json()["detail"]
                assert "domains this key's tenants do not accept: contoso.example." in detail
                assert "tenant contoso" not in detail, where
            elif (method, path) in SEEN_BY_ADDRESS:
                assert response.status_code == 422, where
                assert "is not an accepted domain" in response.json()["detail"], where
            elif method == "GET" and "{" not in path and response.status_code == 200:
                # a list the key may read: filtered, nothing of contoso in it
                assert "contoso" not in response.text, where
            else:
                assert response.status_code == 404, where
                assert set(response.json()) == {"error", "detail"}, where  # no object in it
    assert seen >= 35  # every keyed route of today's API was asked

    # ...and nothing of contoso changed.
    admin = auth(world["admin"])
    alice = await client.get(f"/v1/users/{world['alice']}", headers=admin)
    assert alice.status_code == 200 and alice.json()["display_name"] is None
    tenant = (await client.get("/v1/tenants/contoso", headers=admin)).json()
    assert tenant["display_name"] is None
    domains = (await client.get("/v1/domains", headers=admin)).json()["items"]
    assert {d["name"] for d in domains} == {"contoso.example", "fabrikam.example"}
    assert (await lookup(client, world["admin"], "alice@contoso.example")).json()["verdict"] == (
        "accept"
    )
    members = await client.get(f"/v1/groups/{world['group']}/members", headers=admin)
    assert [m["id"] for m in members.json()["items"]] == [world["alice"]]
    tenants = (await client.get("/v1/tenants", headers=admin)).json()["items"]
    assert "mallory" not in {t["name"] for t in tenants}
    users = (await client.get("/v1/users", headers=admin)).json()["items"]
    assert "mallory@contoso.example" not in {u["email"] for u in users}
    learned = (await client.get("/v1/learned", headers=admin)).json()["items"]
    assert [(i["address"], i["count"]) for i in learned] == [("printer@contoso.example", 1)]


async def test_a_tenant_key_sees_and_changes_its_own_tenant(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    h = auth(world["fabrikam_admin"])
    tenants = (await client.get("/v1/tenants", headers=h)).json()["items"]
    assert [t["name"] for t in tenants] == ["fabrikam"]
    changed = await client.patch("/v1/tenants/fabrikam", json={"display_name": "Fab"}, headers=h)
    assert changed.status_code == 200 and changed.json()["display_name"] == "Fab"
    added = await client.post(
        "/v1/domains", json={"name": "fab2.example", "tenant": "fabrikam"}, headers=h
    )
    assert added.status_code == 201, added.text
    domains = (await client.get("/v1/domains", headers=h)).json()["items"]
    assert {d["name"] for d in domains} == {"fabrikam.example", "fab2.example"}
    assert (await client.delete("/v1/domains/fab2.example", headers=h)).status_code == 204
    # its users and groups, and only those
    made = await client.post("/v1/users", json={"email": "dave@fabrikam.example"}, headers=h)
    assert made.status_code == 201, made.text
    users = (await client.get("/v1/users", headers=h)).json()
    assert {u["email"] for u in users["items"]} == {"bob@fabrikam.example", "dave@fabrikam.example"}
    assert users["total"] == 2
    group = await client.post(
        "/v1/groups",
        json={"display_name": "Fab", "email": "all@fabrikam.example", "members": [world["bob"]]},
        headers=h,
    )
    assert group.status_code == 201, group.text
    members = await client.get(f"/v1/groups/{group.json()['id']}/members", headers=h)
    assert [m["email"] for m in members.json()["items"]] == ["bob@fabrikam.example"]
    groups = (await client.get("/v1/groups", headers=h)).json()["items"]
    assert [g["email"] for g in groups] == ["all@fabrikam.example"]
    smuggled = await client.post(
        f"/v1/groups/{group.json()['id']}/members", json={"member": world["alice"]}, headers=h
    )
    assert smuggled.status_code == 404  # contoso's alice is absent to this key
    patched = await client.patch(
        f"/v1/users/{made.json()['id']}", json={"display_name": "Dave"}, headers=h
    )
    assert patched.status_code == 200 and patched.json()["display_name"] == "Dave"
    assert (await client.delete(f"/v1/users/{made.json()['id']}", headers=h)).status_code == 204
    changes = (await client.get("/v1/changes", headers=h)).json()["items"]
    assert changes and {c["tenant"] for c in changes} == {"fabrikam"}
    everything = (await client.get("/v1/changes", headers=auth(world["admin"]))).json()["items"]
    assert {c["tenant"] for c in everything} >= {"contoso", "fabrikam"}
    connectors = (await client.get("/v1/connectors", headers=h)).json()["items"]
    assert connectors and {c["tenant"] for c in connectors} == {"fabrikam"}
    own = connectors[0]["id"]
    paused = await client.post(f"/v1/connectors/{own}/pause", headers=h)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert (await client.post(f"/v1/connectors/{own}/resume", headers=h)).status_code == 200
    assert (await client.get(f"/v1/connectors/{own}/runs", headers=h)).status_code == 200
    sender = await client.post("/v1/learned", json={"address": "scan@fabrikam.example"}, headers=h)
    assert sender.status_code == 200, sender.text
    learned = (await client.get("/v1/learned", headers=h)).json()
    assert [i["address"] for i in learned["items"]] == ["scan@fabrikam.example"]
    assert learned["total"] == 1
    assert (await client.delete("/v1/learned/scan@fabrikam.example", headers=h)).status_code == 204
    upload = await client.post(
        "/v1/imports",
        files={"file": ("f.csv", csv_bytes([["email"], ["erin@fabrikam.example"]]), "text/csv")},
        headers=auth(world["admin"]),
    )
    own_import = (await created(upload))["id"]
    shown = await client.get(f"/v1/imports/{own_import}", headers=h)
    assert shown.status_code == 200 and shown.json()["tenant"] == "fabrikam"
    # ...and it uploads into its own tenant; new domains (add_domains) go to its tenant too
    rows = [["email"], ["fay@fabrikam.example"], ["gus@fab3.example"]]
    upload = await client.post(
        "/v1/imports",
        params={"add_domains": "true"},
        files={"file": ("f.csv", csv_bytes(rows), "text/csv")},
        headers=h,
    )
    mine = await created(upload)
    assert mine["tenant"] == "fabrikam"
    assert (mine["adds"], mine["domains_added"]) == (2, ["fab3.example"])
    await accepted(client, world["fabrikam_admin"], "gus@fab3.example")
    domains = (await client.get("/v1/domains", headers=h)).json()["items"]
    assert {d["name"] for d in domains} == {"fabrikam.example", "fab3.example"}
    # a file that mixes its domain with contoso's is refused whole: nothing of it applied
    mixed = [["email"], ["hal@fabrikam.example"], ["ivy@contoso.example"]]
    refused = await client.post(
        "/v1/imports",
        files={"file": ("m.csv", csv_bytes(mixed), "text/csv")},
        headers=h,
    )
    assert refused.status_code == 422, refused.text
    assert "contoso.example" in refused.json()["detail"]
    users = (await client.get("/v1/users", headers=auth(world["admin"]))).json()["items"]
    assert not {"hal@fabrikam.example", "ivy@contoso.example"} & {u["email"] for u in users}
    # its lookups answer for its own domains as a global key's do
    answer = (await lookup(client, world["fabrikam_admin"], "bob@fabrikam.example")).json()
    assert (answer["verdict"], answer["tenant"]) == ("accept", "fabrikam")
    batch = await client.post(
        "/v1/recipients/lookup",
        json={"addresses": ["bob@fabrikam.example", "alice@contoso.example", "x@nowhere.test"]},
        headers=h,
    )
    assert [(i["verdict"], i["reason"]) for i in batch.json()["items"]] == [
        ("accept", None),
        ("reject", "domain_not_accepted"),
        ("reject", "domain_not_accepted"),
    ]
    # another tenant's domain answers exactly like a domain nobody accepted
    theirs = await lookup(client, world["fabrikam_admin"], "alice@contoso.example")
    nobody = await lookup(client, world["fabrikam_admin"], "alice@nowhere.test")
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() | {"address": None} == nobody.json() | {"address": None}
    # an absent domain and another tenant's domain give the same 404
    absent = await client.delete("/v1/domains/nowhere.test", headers=h)
    hidden = await client.delete("/v1/domains/contoso.example", headers=h)
    assert absent.status_code == hidden.status_code == 404
    assert absent.json()["detail"].replace("nowhere.test", "X") == hidden.json()["detail"].replace(
        "contoso.example", "X"
    )


async def test_the_documented_route_restricts_lookups_as_the_fast_path_does(
    client: httpx.AsyncClient, world: dict[str, Any], app: Any, fastapi_only: Any
) -> None:
    fastapi_only.state = app.app.app.state
    key = world["fabrikam_admin"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fastapi_only), base_url="http://roster.test"
    ) as slow:
        for address in ("bob@fabrikam.example", "alice@contoso.example", "bad"):
            fast = await lookup(client, key, address)
            documented = await lookup(slow, key, address)
            assert (fast.status_code, fast.content) == (documented.status_code, documented.content)


async def test_a_lookup_key_of_two_tenants_answers_for_both(
    client: httpx.AsyncClient, world: dict[str, Any], app: Any
) -> None:
    both = await tenant_key(app, ["contoso", "fabrikam"], "lookup")
    for address in ("alice@contoso.example", "bob@fabrikam.example"):
        assert (await lookup(client, both, address)).json()["verdict"] == "accept"
    # a lookup key cannot read even its own tenant's objects
    assert (await client.get("/v1/tenants", headers=auth(both))).status_code == 403


async def test_apikeys_are_created_shown_once_listed_without_secrets_and_revoked(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    h = auth(world["admin"])
    made = await client.post(
        "/v1/apikeys",
        json={"name": "fab-gw", "scopes": ["lookup"], "tenants": ["fabrikam"]},
        headers=h,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert set(body) == {"id", "name", "scopes", "tenants", "key"}
    assert (body["scopes"], body["tenants"]) == (["lookup"], ["fabrikam"])
    key = body["key"]
    assert (await lookup(client, key, "bob@fabrikam.example")).json()["verdict"] == "accept"
    assert (await lookup(client, key, "alice@contoso.example")).json()["reason"] == (
        "domain_not_accepted"
    )
    glob = await client.post("/v1/apikeys", json={"name": "g", "scopes": ["read"]}, headers=h)
    assert glob.status_code == 201 and glob.json()["tenants"] is None

    listed = await client.get("/v1/apikeys", headers=h)
    assert listed.status_code == 200
    assert key not in listed.text and glob.json()["key"] not in listed.text
    item = next(i for i in listed.json()["items"] if i["id"] == body["id"])
    assert set(item) == {"id", "name", "prefix", "scopes", "tenants", "created_at", "revoked_at"}
    assert item["tenants"] == ["fabrikam"] and item["revoked_at"] is None

    assert (await client.delete(f"/v1/apikeys/{body['id']}", headers=h)).status_code == 204
    assert (await lookup(client, key, "bob@fabrikam.example")).status_code == 401
    assert (await client.delete("/v1/apikeys/nosuch", headers=h)).status_code == 404


async def test_bad_apikey_requests_change_nothing(
    client: httpx.AsyncClient, world: dict[str, Any], app: Any
) -> None:
    h = auth(world["admin"])
    before = (await client.get("/v1/apikeys", headers=h)).json()["items"]
    unknown = await client.post(
        "/v1/apikeys", json={"name": "x", "scopes": ["read"], "tenants": ["nosuch"]}, headers=h
    )
    assert unknown.status_code == 422 and "nosuch" in unknown.json()["detail"]
    scope = await client.post("/v1/apikeys", json={"name": "x", "scopes": ["root"]}, headers=h)
    assert scope.status_code == 422
    # only a global admin key manages keys: a tenant admin key finds nothing here
    wider = {"name": "wider", "scopes": ["admin"], "tenants": ["fabrikam"]}
    tenant_admin = auth(world["fabrikam_admin"])
    assert (await client.post("/v1/apikeys", json=wider, headers=tenant_admin)).status_code == 404
    writer = auth(await api_key(app, "write"))
    assert (await client.get("/v1/apikeys", headers=writer)).status_code == 403
    after = (await client.get("/v1/apikeys", headers=h)).json()["items"]
    assert len(after) == len(before) + 1  # the write key made above, nothing else

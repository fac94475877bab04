"""A tenant's policy and readiness decide its own lookups only: what a gateway sees per tenant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.connectors import guard
from app.directory import service
from app.directory.models import Tenant
from app.directory.records import SourceKind
from tests.factories import api_key, auth, make_connector, make_recipient


@pytest.fixture
async def keys(app: Any) -> dict[str, str]:
    return {scope: await api_key(app, scope) for scope in ("lookup", "write", "admin")}


def sessions(app: Any) -> Any:
    return app.app.app.state.sessionmaker


async def tenant_with_domain(
    client: httpx.AsyncClient, keys: dict[str, str], name: str, domain: str, **policy: Any
) -> None:
    if name != "default":
        response = await client.post(
            "/v1/tenants", json={"name": name, "policy": policy}, headers=auth(keys["admin"])
        )
        assert response.status_code == 201, response.text
    added = await client.post(
        "/v1/domains", json={"name": domain, "tenant": name}, headers=auth(keys["write"])
    )
    assert added.status_code == 201, added.text


async def verdict(client: httpx.AsyncClient, keys: dict[str, str], address: str) -> tuple[str, Any]:
    body = (await client.get(f"/v1/recipients/{address}", headers=auth(keys["lookup"]))).json()
    return body["verdict"], body["reason"]


async def eventually(
    client: httpx.AsyncClient, keys: dict[str, str], address: str, wanted: tuple[str, Any]
) -> None:
    """Poll the answer (another process's change reaches this one's index by its poller)."""
    seen = None
    for _ in range(400):
        seen = await verdict(client, keys, address)
        if seen == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{address}: still {seen}, wanted {wanted}")


async def test_a_tenant_that_rejects_disabled_mailboxes_leaves_the_default_tenant_accepting(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    await tenant_with_domain(client, keys, "fabrikam", "fabrikam.com", reject_disabled=True)
    await tenant_with_domain(client, keys, "default", "contoso.com")
    for email in ("gone@fabrikam.com", "gone@contoso.com"):
        created = await client.post(
            "/v1/users", json={"email": email, "enabled": False}, headers=auth(keys["write"])
        )
        assert created.status_code == 201, created.text

    assert await verdict(client, keys, "gone@fabrikam.com") == ("reject", "disabled")
    assert await verdict(client, keys, "gone@contoso.com") == ("accept", None)

    await client.patch(
        "/v1/tenants/fabrikam",
        json={"policy": {"reject_disabled": None}},
        headers=auth(keys["admin"]),
    )
    assert await verdict(client, keys, "gone@fabrikam.com") == ("accept", None)


async def test_a_policy_changed_by_another_process_reaches_lookups_within_a_second(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str]
) -> None:
    await tenant_with_domain(client, keys, "fabrikam", "fabrikam.com")
    await client.post(
        "/v1/users",
        json={"email": "gone@fabrikam.com", "enabled": False},
        headers=auth(keys["write"]),
    )
    assert await verdict(client, keys, "gone@fabrikam.com") == ("accept", None)
    async with sessions(app).begin() as session:  # as another replica's API would write it
        await session.execute(
            update(Tenant).where(Tenant.name == "fabrikam").values(reject_disabled=True)
        )
    await eventually(client, keys, "gone@fabrikam.com", ("reject", "disabled"))


async def test_a_tenant_with_a_short_max_staleness_defers_while_the_other_still_rejects(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str]
) -> None:
    await tenant_with_domain(client, keys, "fabrikam", "fabrikam.com", max_staleness=3600)
    await tenant_with_domain(client, keys, "default", "contoso.com")
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)  # within the global 24 h
    async with sessions(app).begin() as session:
        for tenant in ("fabrikam", "default"):
            await make_connector(
                session, SourceKind.GRAPH, tenant=tenant, last_success=two_hours_ago
            )
    await eventually(client, keys, "nobody@fabrikam.com", ("tempfail", "stale"))
    assert await verdict(client, keys, "nobody@contoso.com") == ("reject", "unknown_recipient")

    relaxed = await client.patch(
        "/v1/tenants/fabrikam", json={"policy": {"max_staleness": 0}}, headers=auth(keys["admin"])
    )
    assert relaxed.json()["policy"]["max_staleness"] == 0
    assert await verdict(client, keys, "nobody@fabrikam.com") == ("reject", "unknown_recipient")


async def test_one_tenants_first_round_does_not_defer_another_tenants_mail(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str]
) -> None:
    await tenant_with_domain(client, keys, "fabrikam", "fabrikam.com")
    await tenant_with_domain(client, keys, "default", "contoso.com")
    async with sessions(app).begin() as session:
        await make_connector(session, SourceKind.GRAPH, tenant="fabrikam", ready=False)
        await make_connector(session, SourceKind.GRAPH, tenant="default")
    await client.post("/v1/users", json={"email": "alice@contoso.com"}, headers=auth(keys["write"]))

    await eventually(client, keys, "nobody@fabrikam.com", ("tempfail", "not_ready"))
    assert await verdict(client, keys, "nobody@contoso.com") == ("reject", "unknown_recipient")
    assert await verdict(client, keys, "alice@contoso.com") == ("accept", None)
    unknown = await client.get("/v1/recipients/nobody@contoso.com", headers=auth(keys["lookup"]))
    assert unknown.status_code == 404


async def hold_three_deletions(app: Any, tenant: str, domain: str) -> service.ConnectorRef:
    async with sessions(app).begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, tenant=tenant)
        for n in range(3):
            await make_recipient(
                session, connector, external_id=f"u{n}", addresses=[f"u{n}@{domain}"]
            )
        await guard.hold(
            session, connector.id, ["u0", "u1", "u2"], reason="removed", now=datetime.now(UTC)
        )
        return service.ConnectorRef.of(connector)


@pytest.mark.parametrize(
    "policy", [{"delete_threshold": 2}, {"delete_threshold": 0, "delete_threshold_percent": 50}]
)
async def test_a_tenant_threshold_holds_deletions_the_global_one_would_apply(
    client: httpx.AsyncClient, app: Any, keys: dict[str, str], policy: dict[str, Any]
) -> None:
    await tenant_with_domain(client, keys, "fabrikam", "fabrikam.com", **policy)
    await tenant_with_domain(client, keys, "default", "contoso.com")
    strict = await hold_three_deletions(app, "fabrikam", "fabrikam.com")
    lenient = await hold_three_deletions(app, "default", "contoso.com")
    deployment = guard.GuardSettings(threshold=500)  # three deletions are well under it
    for address in ("u0@fabrikam.com", "u0@contoso.com"):  # the index has seen both rounds
        await eventually(client, keys, address, ("accept", None))

    async with sessions(app).begin() as session:
        now = datetime.now(UTC)
        assert await guard.settle(session, strict, deployment, now=now) is True
        assert await guard.settle(session, lenient, deployment, now=now) is False

    await eventually(client, keys, "u0@contoso.com", ("reject", "unknown_recipient"))
    assert await verdict(client, keys, "u0@fabrikam.com") == ("accept", None)  # held, still mail

"""`roster apikey create --tenant` as an operator types it, and what such a key can do."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.factories import auth
from tests.test_tenants_cli import roster


def test_a_tenant_key_is_created_listed_and_refused_for_an_unknown_tenant(
    database_url: str, sessionmaker: Any
) -> None:
    db = database_url
    roster(db, "tenants", "add", "fabrikam")
    roster(db, "tenants", "add", "contoso")
    made = roster(
        db, "apikey", "create", "fab-gw", "--scope", "read",
        "--tenant", "fabrikam", "--tenant", "contoso", "--json",
    )  # fmt: skip
    info = json.loads(made.stdout)
    assert set(info) == {"id", "name", "scopes", "tenants", "key"}
    assert (info["scopes"], info["tenants"]) == (["read"], ["contoso", "fabrikam"])
    plain = roster(db, "apikey", "create", "fab-ops", "--scope", "admin", "--tenant", "fabrikam")
    assert "tenants=fabrikam" in plain.stdout
    listing = roster(db, "apikey", "list").stdout
    assert "contoso,fabrikam" in listing and "(all)" not in listing
    assert info["key"] not in listing

    bad = roster(
        db, "apikey", "create", "refused", "--scope", "read", "--tenant", "nosuch", check=False
    )
    assert bad.returncode == 1 and "unknown tenant: nosuch" in bad.stderr
    assert "refused" not in roster(db, "apikey", "list").stdout


async def test_a_cli_tenant_key_reads_only_its_tenant_through_the_api(
    database_url: str, sessionmaker: Any, client: httpx.AsyncClient
) -> None:
    roster(database_url, "tenants", "add", "fabrikam")
    roster(database_url, "tenants", "add", "contoso")
    made = roster(
        database_url, "apikey", "create", "fab", "--scope", "read", "--tenant", "fabrikam",
        "--json",
    )  # fmt: skip
    key = json.loads(made.stdout)["key"]
    listed = (await client.get("/v1/tenants", headers=auth(key))).json()["items"]
    assert [t["name"] for t in listed] == ["fabrikam"]
    assert (await client.get("/v1/tenants/contoso", headers=auth(key))).status_code == 404

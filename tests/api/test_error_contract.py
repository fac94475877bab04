"""The error contract clients rely on, through the full ASGI stack `roster serve` runs.

Every error body is `{"error", "detail"}`, every 503 says when to come back with the one
`Retry-After` value, and the OpenAPI document lists every status these calls really got.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.api.responses import RETRY_AFTER
from app.api.routes.auth import AuthRateLimiter
from app.db.engine import create_engine, create_sessionmaker
from app.settings import LdapSettings
from tests.api.outages import DEAD_DATABASE, index_cut_off
from tests.factories import api_domain, api_key, auth


@pytest.fixture
async def keys(app: Any) -> dict[str, str]:
    return {scope: await api_key(app, scope) for scope in ("lookup", "read", "write", "admin")}


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    return document


@pytest.fixture
async def documented_route(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """FastAPI alone (no fast paths), sharing the running app's state."""
    from app.main import create_app

    fastapi_app = create_app(app.app.app.state.settings)
    fastapi_app.state = app.app.app.state
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=fastapi_app), base_url="http://roster.test"
    ) as client:
        yield client


def operation_of(spec: dict[str, Any], response: httpx.Response) -> dict[str, Any]:
    """The OpenAPI operation that served this request (literal paths win over templates)."""
    method, path = response.request.method.lower(), response.request.url.path
    candidates = []
    for template, operations in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if method in operations and re.match(pattern, path):
            candidates.append((template.count("{"), template))
    assert candidates, f"{method.upper()} {path} is not in the OpenAPI document"
    operation: dict[str, Any] = spec["paths"][min(candidates)[1]][method]
    return operation


def assert_documented(spec: dict[str, Any], response: httpx.Response) -> None:
    """The status is listed for its operation; errors have the one shape; 503s say when."""
    operation = operation_of(spec, response)
    code = str(response.status_code)
    where = f"{response.request.method} {response.request.url.path} -> {code}"
    assert code in operation["responses"], f"{where} is not documented"
    documented = operation["responses"][code]
    schema = str(documented.get("content", {}).get("application/json", {}).get("schema"))
    if response.status_code >= 400 and "Health" not in schema:  # /readyz answers its Health
        body = response.json()
        assert isinstance(body["error"], str) and body["error"], where
        assert isinstance(body["detail"], str), where
    if response.status_code == 503:
        assert response.headers["retry-after"] == str(RETRY_AFTER), where
    if response.status_code in (429, 503):
        assert response.headers["retry-after"].isdigit(), where
        assert documented["headers"]["Retry-After"]["required"] is True, where


def assert_retry_after(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER)


async def test_every_status_the_api_answers_is_in_the_openapi_document(
    client: httpx.AsyncClient, keys: dict[str, str], spec: dict[str, Any]
) -> None:
    write, read, lookup = auth(keys["write"]), auth(keys["read"]), auth(keys["lookup"])
    await api_domain(client, keys["write"], "contoso.com")
    user = {"email": "ann@contoso.com", "aliases": ["a@contoso.com"]}
    seen = [
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/v1/recipients/ann@contoso.com"),  # no key
        await client.get("/v1/recipients/ann@contoso.com", headers=auth("rst_unknown")),
        await client.get("/v1/users", headers=lookup),  # scope too small
        await client.post("/v1/users", json=user, headers=write),
        await client.post("/v1/users", json=user, headers=write),  # address taken
        await client.post("/v1/users", json={"email": "not an address"}, headers=write),
        await client.post("/v1/users", json={"email": "b@contoso.com", "x": 1}, headers=write),
        await client.post("/v1/users", content=b"{" + b" " * 2_000_000 + b"}", headers=write),
        await client.get("/v1/users/00000000-0000-0000-0000-000000000000", headers=read),
        await client.get("/v1/recipients/ann@contoso.com", headers=lookup),
        await client.get("/v1/recipients/nobody@contoso.com", headers=lookup),
        await client.get("/v1/recipients/not-an-address", headers=lookup),
        await client.post("/v1/recipients/lookup", json={"addresses": ["x"] * 1001},
                          headers=lookup),
        await client.get("/v1/changes?since=soon", headers=read),
        await client.get("/v1/learned?offset=100000000000000000000", headers=read),
        await client.post("/v1/recipients/lookup", content=b"\xff{", headers=lookup),
        await client.post("/v1/connectors/nope/sync", headers=write),
        await client.post(
            "/v1/auth/verify", json={"username": "ann", "password": "pw"}, headers=write
        ),
        await client.post(
            "/v1/auth/verify", json={"username": "ann", "password": "pw"},
            headers=auth(keys["admin"]),
        ),
    ]  # fmt: skip
    statuses = {r.status_code for r in seen}
    assert {200, 201, 400, 401, 403, 404, 409, 413, 422} <= statuses  # the tour covers them
    for response in seen:
        assert_documented(spec, response)


async def test_auth_verify_without_ldap_is_a_documented_409_not_a_503(
    client: httpx.AsyncClient, keys: dict[str, str], spec: dict[str, Any]
) -> None:
    response = await client.post(
        "/v1/auth/verify",
        json={"username": "ann", "password": "pw"},
        headers=auth(keys["admin"]),
    )
    assert (response.status_code, response.json()["error"]) == (409, "NotConfigured")
    assert "ROSTER_LDAP__URL" in response.json()["detail"]
    assert_documented(spec, response)


def unreachable_ldap(app: Any) -> None:
    """A directory is configured, but nothing answers at its URL (no Samba needed)."""
    state = app.app.app.state
    ldap = LdapSettings(
        urls=["ldap://127.0.0.1:1"],
        bind_dn="svc@corp.example",
        bind_password=SecretStr("svc-password"),
        connect_timeout=2,
    )
    state.settings = state.settings.model_copy(update={"ldap": ldap})


async def test_auth_verify_with_an_unreachable_dc_is_503_with_retry_after(
    client: httpx.AsyncClient, keys: dict[str, str], app: Any, spec: dict[str, Any]
) -> None:
    unreachable_ldap(app)
    response = await client.post(
        "/v1/auth/verify",
        json={"username": "ann@corp.example", "password": "pw"},
        headers=auth(keys["admin"]),
    )
    assert_retry_after(response)
    assert response.json() == {
        "result": "unavailable",
        "error": "AuthUnavailable",
        "detail": "no domain controller could verify the password; try again later",
    }
    assert_documented(spec, response)


async def test_a_rate_limited_verify_keeps_its_computed_wait_while_503s_say_the_constant(
    client: httpx.AsyncClient, keys: dict[str, str], app: Any, spec: dict[str, Any]
) -> None:
    unreachable_ldap(app)
    now = [1000.0]
    app.app.app.state.auth_limiter = AuthRateLimiter(
        username_burst=2, username_per_minute=1, clock=lambda: now[0]
    )
    answers = [
        await client.post(
            "/v1/auth/verify",
            json={"username": "ann", "password": "pw"},
            headers=auth(keys["admin"]),
        )
        for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [503, 503, 429]
    assert [a.headers["retry-after"] for a in answers] == [str(RETRY_AFTER)] * 2 + ["60"]
    for answer in answers:
        assert_documented(spec, answer)


async def test_readyz_not_ready_is_503_with_retry_after(
    client: httpx.AsyncClient, app: Any, spec: dict[str, Any]
) -> None:
    async with index_cut_off(app):
        response = await client.get("/readyz")
    assert_retry_after(response)
    assert response.json()["status"] == "unavailable"
    assert response.json()["detail"]["index"] == "unavailable"
    assert_documented(spec, response)
    assert (await client.get("/readyz")).status_code == 200


async def test_readyz_with_the_database_down_is_503_with_retry_after(
    client: httpx.AsyncClient, app: Any, spec: dict[str, Any]
) -> None:
    state = app.app.app.state
    good, dead = state.sessionmaker, create_engine(DEAD_DATABASE)
    state.sessionmaker = create_sessionmaker(dead)
    try:
        response = await client.get("/readyz")
    finally:
        state.sessionmaker = good
        await dead.dispose()
    assert_retry_after(response)
    assert response.json()["detail"]["database"].startswith("unavailable")
    assert_documented(spec, response)


@pytest.mark.parametrize("route", ["fast path", "documented route"])
async def test_an_api_key_check_that_cannot_reach_the_database_is_503_with_retry_after(
    client: httpx.AsyncClient,
    documented_route: httpx.AsyncClient,
    app: Any,
    spec: dict[str, Any],
    route: str,
) -> None:
    """A key the cache has not seen must be checked in the database; if it is gone, defer."""
    keys = app.app.app.state.keys
    good, dead = keys.engine, create_engine(DEAD_DATABASE)
    keys.engine = dead
    ask = client if route == "fast path" else documented_route
    try:
        lookup = await ask.get("/v1/recipients/a@contoso.com", headers=auth("rst_not_cached"))
        listing = await ask.get("/v1/users", headers=auth("rst_not_cached"))
    finally:
        keys.engine = good
        await dead.dispose()
    for response in (lookup, listing):
        assert_retry_after(response)
        assert response.json()["error"] in ("LookupUnavailable", "DatabaseUnavailable")
        assert_documented(spec, response)


async def test_a_read_with_the_database_down_is_503_with_retry_after(
    client: httpx.AsyncClient, keys: dict[str, str], app: Any, spec: dict[str, Any]
) -> None:
    state = app.app.app.state
    good, dead = state.sessionmaker, create_engine(DEAD_DATABASE)
    state.sessionmaker = create_sessionmaker(dead)
    try:
        response = await client.get("/v1/users", headers=auth(keys["read"]))
    finally:
        state.sessionmaker = good
        await dead.dispose()
    assert_retry_after(response)
    assert response.json() == {
        "error": "DatabaseUnavailable",
        "detail": "the database is unavailable; nothing was changed",
    }
    assert_documented(spec, response)


async def test_lookup_tempfail_is_documented_with_retry_after(
    client: httpx.AsyncClient, keys: dict[str, str], app: Any, spec: dict[str, Any]
) -> None:
    async with index_cut_off(app):
        response = await client.get("/v1/recipients/x@contoso.com", headers=auth(keys["lookup"]))
    assert_retry_after(response)
    assert response.json()["verdict"] == "tempfail"
    assert_documented(spec, response)


async def test_oversize_bodies_are_refused_in_the_one_error_shape(
    client: httpx.AsyncClient, keys: dict[str, str], app: Any, spec: dict[str, Any]
) -> None:
    limit = app.app.app.state.settings.max_body_bytes
    response = await client.post(
        "/v1/learned", content=b"x" * (limit + 1), headers=auth(keys["write"])
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": "PayloadTooLarge",
        "detail": f"request body over {limit} bytes",
    }
    assert response.headers["content-length"] == str(len(response.content))
    assert_documented(spec, response)


async def test_a_body_that_is_not_json_is_400_malformed(
    client: httpx.AsyncClient, keys: dict[str, str], spec: dict[str, Any]
) -> None:
    response = await client.post(
        "/v1/recipients/lookup",
        content=b"\xff{",
        headers={**auth(keys["lookup"]), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Malformed"
    assert_documented(spec, response)


async def test_a_wrong_method_is_405_and_allow_names_every_method_of_the_path(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    response = await client.put(
        "/v1/users/00000000-0000-0000-0000-000000000000", headers=auth(keys["write"])
    )
    assert response.status_code == 405
    assert response.json()["error"] == "MethodNotAllowed"
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    response = await client.request("OPTIONS", "/v1/users")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD, POST")

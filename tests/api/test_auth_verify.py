"""POST /v1/auth/verify: bind-through password checks against the real Samba DC.

Tests marked `samba` get an app pointed at the DC; the others run with no LDAP directory at all,
so they run (and must pass) on machines without Samba too.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from app.api.responses import RETRY_AFTER
from app.api.routes.auth import AuthRateLimiter, account_key
from app.settings import Settings
from tests.factories import api_key, auth

samba = pytest.mark.samba

SECRET = "Very-Secret-Pa55word!"
LDAP_SETTINGS = ("ROSTER_LDAP__URL", "ROSTER_LDAP__BIND_DN", "ROSTER_LDAP__BIND_PASSWORD")


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    dc = request.getfixturevalue("samba_dc") if request.node.get_closest_marker("samba") else None
    return Settings(  # type: ignore[call-arg]
        database_url=database_url,
        index_poll_interval=0.05,
        run_connectors=False,
        ldap=dc.settings() if dc is not None else None,
        _env_file=None,
    )


@pytest.fixture
async def admin(app: Any) -> dict[str, str]:
    return auth(await api_key(app, "admin"))


def use_ldap(app: Any, **overrides: Any) -> None:
    """Point the running app at other LDAP settings (SettingsDep reads app.state per request)."""
    state = app.app.app.state
    ldap = state.settings.ldap.model_copy(update=overrides) if overrides else None
    state.settings = state.settings.model_copy(update={"ldap": ldap})


async def verify(
    client: httpx.AsyncClient, headers: dict[str, str], username: str, password: str
) -> httpx.Response:
    return await client.post(
        "/v1/auth/verify", json={"username": username, "password": password}, headers=headers
    )


@samba
@pytest.mark.parametrize("username", ["alice@example.test", "EXAMPLE\\alice", "alice"])
async def test_right_password_is_ok(client, admin, samba_dc, username: str) -> None:
    response = await verify(client, admin, username, samba_dc.user_password)
    assert (response.status_code, response.json()) == (200, {"result": "ok"})


@samba
async def test_wrong_password_and_unknown_user_are_invalid(client, admin) -> None:
    for username in ("alice", "nobody@example.test"):
        response = await verify(client, admin, username, SECRET)
        assert (response.status_code, response.json()) == (200, {"result": "invalid"})


@samba
async def test_disabled_account_is_disabled_or_locked(client, admin, samba_dc) -> None:
    response = await verify(client, admin, "carol", samba_dc.user_password)
    assert (response.status_code, response.json()) == (200, {"result": "disabled_or_locked"})


@samba
async def test_dead_dc_url_is_unavailable_503(client, admin, app, samba_dc) -> None:
    use_ldap(app, urls=["ldaps://localhost:1"])
    response = await verify(client, admin, "alice", samba_dc.user_password)
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    body = response.json()
    assert body["result"] == "unavailable"
    assert body["error"] == "AuthUnavailable"


@samba
async def test_stopped_dc_is_unavailable_503(client, admin, samba_dc) -> None:
    samba_dc.stop()
    try:
        response = await verify(client, admin, "alice@example.test", samba_dc.user_password)
    finally:
        samba_dc.start()
    assert (response.status_code, response.json()["result"]) == (503, "unavailable")
    assert response.headers["retry-after"] == str(RETRY_AFTER)


async def test_without_an_ldap_directory_it_is_409_not_configured_naming_the_settings(
    client, admin
) -> None:
    response = await verify(client, admin, "alice", SECRET)
    assert response.status_code == 409
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "NotConfigured"
    for name in LDAP_SETTINGS:
        assert name in body["detail"]
    assert "retry-after" not in response.headers  # retrying cannot help; an operator must act
    assert SECRET not in response.text


def test_the_settings_named_are_the_ones_that_configure_ldap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = {
        "ROSTER_LDAP__URL": "ldaps://dc1.corp.example",
        "ROSTER_LDAP__BIND_DN": "svc@corp.example",
        "ROSTER_LDAP__BIND_PASSWORD": SECRET,
    }
    assert set(values) == set(LDAP_SETTINGS)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    ldap = Settings(_env_file=None).ldap  # type: ignore[call-arg]
    assert ldap is not None
    assert (ldap.urls, ldap.bind_dn) == (["ldaps://dc1.corp.example"], "svc@corp.example")


async def test_needs_the_admin_scope(client, app) -> None:
    response = await verify(client, auth(await api_key(app, "write")), "alice", SECRET)
    assert (response.status_code, response.json()["error"]) == (403, "Forbidden")
    response = await verify(client, {}, "alice", SECRET)
    assert response.status_code == 401


@samba
async def test_attempts_per_username_are_rate_limited(client, admin, app, samba_dc) -> None:
    now = [1000.0]
    app.app.app.state.auth_limiter = AuthRateLimiter(
        username_burst=3, username_per_minute=6, clock=lambda: now[0]
    )
    for _ in range(3):
        assert (await verify(client, admin, "alice", SECRET)).status_code == 200
    # The same account under another spelling shares the budget, even with the right password.
    response = await verify(client, admin, "EXAMPLE\\Alice", samba_dc.user_password)
    assert response.status_code == 429
    assert set(response.json()) == {"error", "detail"}
    assert response.json()["error"] == "TooManyRequests"
    assert response.headers["retry-after"] == "10"
    # Another user from the same client is not affected; alice recovers after the refill.
    assert (await verify(client, admin, "bob", SECRET)).status_code == 200
    now[0] += 10
    response = await verify(client, admin, "alice", samba_dc.user_password)
    assert response.json() == {"result": "ok"}


@samba
async def test_attempts_per_client_are_rate_limited(client, admin, app) -> None:
    now = [1000.0]
    app.app.app.state.auth_limiter = AuthRateLimiter(
        client_burst=4, client_per_minute=60, clock=lambda: now[0]
    )
    for i in range(4):
        assert (await verify(client, admin, f"user{i}", SECRET)).status_code == 200
    response = await verify(client, admin, "someone-else", SECRET)
    assert (response.status_code, response.json()["error"]) == (429, "TooManyRequests")
    now[0] += 1
    assert (await verify(client, admin, "someone-else", SECRET)).status_code == 200


def test_account_key_folds_spellings() -> None:
    assert account_key(" EXAMPLE\\Alice ") == account_key("alice@example.test") == "alice"


@samba
async def test_password_never_appears_in_logs_or_responses(
    client, admin, app, samba_dc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app.app.app.state.auth_limiter = AuthRateLimiter(username_burst=2)
    responses = [
        await verify(client, admin, "alice", SECRET),  # invalid
        await verify(client, admin, "carol", samba_dc.user_password),  # disabled
        await verify(client, admin, "alice", samba_dc.user_password),  # ok
        await verify(client, admin, "alice", SECRET),  # rate limited
        await client.post(  # validation error
            "/v1/auth/verify",
            json={"username": "alice", "password": SECRET, "extra": SECRET},
            headers=admin,
        ),
        await client.post(
            "/v1/auth/verify", json={"username": "", "password": SECRET}, headers=admin
        ),
    ]
    use_ldap(app, urls=["ldaps://localhost:1"])
    responses.append(await verify(client, admin, "bob", SECRET))  # unavailable
    use_ldap(app)
    responses.append(await verify(client, admin, "bob", SECRET))  # not configured
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 422, 422, 503, 409]
    for response in responses:
        assert SECRET not in response.text
        assert samba_dc.user_password not in response.text
    assert "alice" in caplog.text  # the username is logged ...
    assert SECRET not in caplog.text  # ... the password never
    assert samba_dc.user_password not in caplog.text

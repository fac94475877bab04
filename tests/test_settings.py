"""Settings as operators write them in the environment (docs/contracts.md §11, §12)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.connectors.graph.config import GraphConfig
from app.connectors.ldap.config import LdapConfig
from app.settings import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("900", timedelta(minutes=15)),
        ("PT15M", timedelta(minutes=15)),
        ("0", timedelta(0)),
        ("P1D", timedelta(days=1)),
        ("0.5", timedelta(seconds=0.5)),
    ],
)
def test_durations_are_seconds_or_iso_8601(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: timedelta
) -> None:
    monkeypatch.setenv("ROSTER_MAX_STALENESS", text)
    monkeypatch.setenv("ROSTER_GRAPH__TENANT_ID", "t")
    monkeypatch.setenv("ROSTER_GRAPH__CLIENT_ID", "c")
    monkeypatch.setenv("ROSTER_GRAPH__POLL_INTERVAL", text)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.max_staleness == expected
    assert settings.graph is not None and settings.graph.poll_interval == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./r.db", "sqlite+aiosqlite:///./r.db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_picks_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("ROSTER_DATABASE_URL", url)
    assert Settings(_env_file=None).database_url == expected  # type: ignore[call-arg]


def test_lists_and_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROSTER_LDAP__URL", "ldaps://dc1.corp.example, ldaps://dc2.corp.example")
    monkeypatch.setenv("ROSTER_LDAP__BIND_DN", "svc@corp.example")
    monkeypatch.setenv("ROSTER_LDAP__BIND_PASSWORD", "s3cret-value")
    monkeypatch.setenv("ROSTER_LDAP__BASE_DN", "OU=A,DC=corp,DC=example;OU=B,DC=corp,DC=example")
    monkeypatch.setenv("ROSTER_LDAP__DOMAINS", "corp.example,mail.corp.example")
    monkeypatch.setenv("ROSTER_TRUSTED_NETWORKS", "10.0.0.0/8 192.168.1.0/24")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ldap is not None
    assert settings.ldap.urls == ["ldaps://dc1.corp.example", "ldaps://dc2.corp.example"]
    assert settings.ldap.base_dn == ["OU=A,DC=corp,DC=example", "OU=B,DC=corp,DC=example"]
    assert settings.ldap.domains == ["corp.example", "mail.corp.example"]
    assert settings.trusted_networks == ["10.0.0.0/8", "192.168.1.0/24"]
    assert "s3cret-value" not in repr(settings)


def test_an_api_body_and_the_environment_share_one_validator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The env connection and a connection created over the API must mean the same thing by the
    # same words; the body's config model carries no secret, and the settings model adds it.
    monkeypatch.setenv("ROSTER_GRAPH__TENANT_ID", "t")
    monkeypatch.setenv("ROSTER_GRAPH__CLIENT_ID", "c")
    monkeypatch.setenv("ROSTER_GRAPH__CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("ROSTER_GRAPH__POLL_INTERVAL", "PT5M")
    monkeypatch.setenv("ROSTER_GRAPH__STREAMS", "users, groups")
    env = Settings(_env_file=None).graph  # type: ignore[call-arg]
    body = GraphConfig.model_validate_json(
        '{"tenant_id": "t", "client_id": "c", "poll_interval": 300, "streams": ["users", "groups"]}'
    )
    assert env is not None and isinstance(env, GraphConfig)
    assert GraphConfig.model_validate(env.model_dump()) == body
    assert "s3cret-value" not in GraphConfig.model_validate(env.model_dump()).model_dump_json()
    ldap = LdapConfig.model_validate({"url": "ldaps://dc1, ldaps://dc2", "bind_dn": "svc"})
    assert ldap.urls == ["ldaps://dc1", "ldaps://dc2"]
    assert "bind_password" not in LdapConfig.model_fields
    assert "client_secret" not in GraphConfig.model_fields

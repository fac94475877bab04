"""Typed settings, read once at the entry point (env prefix ROSTER_, nested delimiter __)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./roster.db"


class GraphSettings(BaseModel):
    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    certificate_path: str | None = None
    base_url: str = "https://graph.microsoft.com/v1.0"
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: str | None = None
    poll_interval: timedelta = timedelta(minutes=15)


class LdapSettings(BaseModel):
    url: str = "ldaps://dc1.corp.example:636"
    bind_dn: str
    bind_password: SecretStr
    base_dn: str
    ca_file: str | None = None
    allow_plaintext: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ROSTER_",
        env_nested_delimiter="__",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
    )

    database_url: str = DEFAULT_DATABASE_URL
    public_url: str | None = None
    secret_key: SecretStr | None = None
    socketmap_listen: str | None = None
    tcp_table_listen: str | None = None
    policy_listen: str | None = None
    recipient_delimiter: str = "+"
    max_staleness: timedelta = timedelta(hours=24)
    reject_disabled: bool = False
    delete_threshold: int = 500
    delete_threshold_percent: float = 0.0
    index_poll_interval: float = 0.25
    max_body_bytes: int = 1_048_576
    max_import_bytes: int = 50 * 1_048_576
    trusted_networks: list[str] = []
    learn_min_count: int = 1
    graph: GraphSettings | None = None
    ldap: LdapSettings | None = None

    @field_validator("database_url")
    @classmethod
    def _pick_async_driver(cls, value: str) -> str:
        return async_database_url(value)


def async_database_url(url: str) -> str:
    """Accept plain `sqlite://` and `postgresql://` URLs; Roster chooses the async driver."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url

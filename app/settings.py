"""Typed settings, read once at the entry point (env prefix ROSTER_, nested delimiter __)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./roster.db"


def _seconds_or_iso(value: Any) -> Any:
    """Durations are seconds (`900`, `0.5`) or ISO 8601 (`PT15M`); env values arrive as text."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return timedelta(seconds=float(value))
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds_or_iso)]


def _word_list(value: Any) -> Any:
    """Lists in the environment are comma- or space-separated (`a.example, b.example`)."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


class GraphSettings(BaseModel):
    tenant_id: str
    client_id: str
    client_secret: SecretStr | None = None
    certificate_path: str | None = None
    base_url: str = "https://graph.microsoft.com/v1.0"
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: str | None = None
    poll_interval: Duration = timedelta(minutes=15)
    # Delta streams to mirror; `contacts` needs OrgContact.Read.All (ROSTER_GRAPH__STREAMS).
    streams: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["users", "groups", "contacts"]
    )

    @field_validator("streams", mode="before")
    @classmethod
    def _split_streams(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.replace(",", " ").split() if part]
        return value


class LdapSettings(BaseModel):
    """What the LDAP connector needs to reach a directory (env: ROSTER_LDAP__URL, ...).

    `urls` (env `ROSTER_LDAP__URL`, comma- or space-separated) are tried in order (failover).
    `bind_dn` may be a DN, a UPN (`svc@corp.example`) or `DOMAIN\\user`. `tls_server_name` is
    the name the certificate must carry when the URL host cannot be the DC's FQDN (an IP
    address, or a name that does not resolve).
    """

    urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ldaps://dc1.corp.example:636"],
        validation_alias=AliasChoices("urls", "url"),
    )
    bind_dn: str
    bind_password: SecretStr
    base_dn: Annotated[list[str], NoDecode] = Field(default_factory=list)
    ca_file: str | None = None
    tls_server_name: str | None = None
    start_tls: bool = True
    allow_plaintext: bool = False
    extra_filter: str | None = None
    connect_timeout: int = 5
    receive_timeout: int = 60  # ldap3 packs it into SO_RCVTIMEO: whole seconds
    page_size: int = 500
    range_size: int = 1500
    poll_interval: Duration = timedelta(minutes=15)
    # AD keeps no list of mail domains (without the Exchange schema): ROSTER_LDAP__DOMAINS names
    # them (comma-separated) and this connector then owns exactly those accepted domains.
    domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Without rights on CN=Deleted Objects, deletions are only found by full rounds with a sweep.
    full_round_interval: Duration = timedelta(hours=6)

    _split_lists = field_validator("urls", "domains", mode="before")(_word_list)

    @field_validator("base_dn", mode="before")
    @classmethod
    def _split_base_dns(cls, value: Any) -> Any:
        # DNs contain commas, so several base DNs in one string are separated by ";".
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value


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
    max_staleness: Duration = timedelta(hours=24)
    reject_disabled: bool = False
    delete_threshold: int = 500
    delete_threshold_percent: float = 0.0
    index_poll_interval: float = 0.25
    max_body_bytes: int = 1_048_576
    max_import_bytes: int = 50 * 1_048_576
    trusted_networks: Annotated[list[str], NoDecode] = []
    learn_min_count: int = 1
    run_connectors: bool = True  # `roster serve` runs the configured directories' sync
    graph: GraphSettings | None = None
    ldap: LdapSettings | None = None

    _split_networks = field_validator("trusted_networks", mode="before")(_word_list)

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

"""Typed settings, read once at the entry point (env prefix ROSTER_, nested delimiter __).

The connectors' models (`app/connectors/*/config.py`) and the URL helper (`app/db/urls.py`)
live below; this module composes them, so the layers under it never import settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.connectors.fields import Duration, word_list
from app.connectors.graph.config import GraphSettings
from app.connectors.ldap.config import LdapSettings
from app.db.urls import DEFAULT_DATABASE_URL, async_database_url

__all__ = ["DEFAULT_DATABASE_URL", "Duration", "GraphSettings", "LdapSettings", "Settings"]


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

    _split_networks = field_validator("trusted_networks", mode="before")(word_list)

    @field_validator("database_url")
    @classmethod
    def _pick_async_driver(cls, value: str) -> str:
        return async_database_url(value)

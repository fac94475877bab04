"""What a Graph connection needs: `GraphConfig` is the part an API body may carry and answer
with; `GraphSettings` adds the credentials (env: ROSTER_GRAPH__TENANT_ID, ...)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from app.connectors.fields import Duration, word_list


class GraphConfig(BaseModel):
    """No secrets here: safe to validate from a request and to return."""

    tenant_id: str
    client_id: str
    base_url: str = "https://graph.microsoft.com/v1.0"
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: str | None = None
    poll_interval: Duration = timedelta(minutes=15)
    # Delta streams to mirror; `contacts` needs OrgContact.Read.All (ROSTER_GRAPH__STREAMS).
    streams: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["users", "groups", "contacts"]
    )

    _split_streams = field_validator("streams", mode="before")(word_list)


class GraphSettings(GraphConfig):
    """The config plus how the app proves itself: a client secret or a certificate file."""

    client_secret: SecretStr | None = None
    certificate_path: str | None = None

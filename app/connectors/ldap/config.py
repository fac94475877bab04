"""What an LDAP connection needs: `LdapConfig` is the part an API body may carry and answer
with; `LdapSettings` adds the bind password (env: ROSTER_LDAP__URL, ...)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from app.connectors.fields import Duration, word_list


class LdapConfig(BaseModel):
    """How to reach a directory, without secrets: safe to validate from a request and to return.

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

    _split_lists = field_validator("urls", "domains", mode="before")(word_list)

    @field_validator("base_dn", mode="before")
    @classmethod
    def _split_base_dns(cls, value: Any) -> Any:
        # DNs contain commas, so several base DNs in one string are separated by ";".
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value


class LdapSettings(LdapConfig):
    """The config plus the service account's password."""

    bind_password: SecretStr

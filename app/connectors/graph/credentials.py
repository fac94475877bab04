"""azure-identity credentials for the Graph connector, built from settings values.

Async credentials only: a sync credential blocks the event loop while it refreshes. Microsoft Learn
"Get access without a user" (https://learn.microsoft.com/graph/auth-v2-service) describes the
client-credentials flow these use; the authority host picks the cloud
(https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential, DefaultAzureCredential
from pydantic import SecretStr

logger = logging.getLogger(__name__)

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
# Entra ID authority hosts of the public and national clouds (azure.identity.AzureAuthorityHosts).
MICROSOFT_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
})  # fmt: skip

CredentialFactory = Callable[[], AsyncTokenCredential]


class GraphCredentialSettings(Protocol):
    """The fields of `Settings.graph` this module reads (docs/contracts.md §12)."""

    tenant_id: str
    client_id: str
    client_secret: SecretStr | None
    certificate_path: str | None
    authority_host: str
    ca_bundle: str | None


def is_microsoft_authority(authority_host: str) -> bool:
    host = urlsplit(authority_host if "//" in authority_host else f"https://{authority_host}")
    return (host.hostname or "").lower() in MICROSOFT_AUTHORITY_HOSTS


def normalize_authority(authority_host: str) -> str:
    """azure-identity wants `https://host[:port]`; a bare host name gets https."""
    authority = authority_host.rstrip("/")
    if "//" not in authority:
        authority = f"https://{authority}"
    if not authority.startswith("https://"):
        # azure-identity refuses it anyway ("must be a TLS protected (https) URL"); say so early.
        raise ValueError("the Graph authority host must be an https URL")
    return authority


def build_credential(
    *,
    tenant_id: str,
    client_id: str | None = None,
    client_secret: str | SecretStr | None = None,
    certificate_path: str | None = None,
    certificate_password: str | SecretStr | None = None,
    authority_host: str = DEFAULT_AUTHORITY_HOST,
    ca_bundle: str | None = None,
) -> AsyncTokenCredential:
    """A client-secret, certificate or (neither given) DefaultAzureCredential credential.

    `disable_instance_discovery` is set for a non-Microsoft authority (the simulator, ADFS-like
    hosts): otherwise MSAL asks login.microsoftonline.com to validate it first. A CA bundle is
    passed as `connection_verify` because the sync and async stacks read different env vars.
    """
    authority = normalize_authority(authority_host)
    options: dict[str, Any] = {"authority": authority}
    if not is_microsoft_authority(authority):
        options["disable_instance_discovery"] = True
    if ca_bundle:
        options["connection_verify"] = ca_bundle
    secret = _unwrap(client_secret)
    if secret and client_id:
        logger.info("graph credential: kind=client_secret authority=%s", authority)
        return ClientSecretCredential(tenant_id, client_id, secret, **options)
    if certificate_path and client_id:
        logger.info("graph credential: kind=certificate authority=%s", authority)
        password = _unwrap(certificate_password)
        return CertificateCredential(
            tenant_id,
            client_id,
            certificate_path,
            password=password.encode() if password else None,
            **options,
        )
    # Managed identity / workload identity / environment (AZURE_* variables).
    logger.info("graph credential: kind=default authority=%s", authority)
    if client_id:
        options["managed_identity_client_id"] = client_id
        options["workload_identity_client_id"] = client_id
    return DefaultAzureCredential(
        workload_identity_tenant_id=tenant_id,
        exclude_interactive_browser_credential=True,
        exclude_cli_credential=True,
        exclude_developer_cli_credential=True,
        exclude_powershell_credential=True,
        exclude_visual_studio_code_credential=True,
        exclude_shared_token_cache_credential=True,
        **options,
    )


def credential_factory(settings: GraphCredentialSettings) -> CredentialFactory:
    """A factory, so the client can start over with an empty token cache after a 401."""

    def make() -> AsyncTokenCredential:
        return build_credential(
            tenant_id=settings.tenant_id,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            certificate_path=getattr(settings, "certificate_path", None),
            authority_host=getattr(settings, "authority_host", DEFAULT_AUTHORITY_HOST),
            ca_bundle=getattr(settings, "ca_bundle", None),
        )

    return make


def _unwrap(value: str | SecretStr | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value

"""azure-identity credentials built from settings values, against the simulator's token endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential, DefaultAzureCredential
from pydantic import SecretStr

from app.connectors.graph.client import GraphClient
from app.connectors.graph.credentials import (
    build_credential,
    is_microsoft_authority,
    normalize_authority,
)
from app.settings import GraphSettings
from app.simulator.graph import RunningSimulator, make_client_certificate

SCOPE = "https://127.0.0.1/.default"


def test_microsoft_cloud_hosts_are_recognised() -> None:
    assert is_microsoft_authority("https://login.microsoftonline.com")
    assert is_microsoft_authority("login.microsoftonline.us")
    assert is_microsoft_authority("https://login.chinacloudapi.cn/")
    assert not is_microsoft_authority("https://127.0.0.1:8443")


def test_authority_must_be_https() -> None:
    assert normalize_authority("login.microsoftonline.com/") == "https://login.microsoftonline.com"
    with pytest.raises(ValueError, match="https"):
        normalize_authority("http://127.0.0.1:8443")


async def test_client_secret_credential_gets_a_token_through_the_simulator(
    simulator: RunningSimulator,
) -> None:
    credential = build_credential(
        tenant_id="contoso",
        client_id=simulator.state.client_id,
        client_secret=simulator.state.client_secret,
        authority_host=simulator.authority,
        ca_bundle=str(simulator.ca_file),
    )
    assert isinstance(credential, ClientSecretCredential)
    async with credential:
        token = await credential.get_token(SCOPE)
        again = await credential.get_token(SCOPE)
    assert token.token == again.token  # cached
    assert simulator.state.auth.is_valid(f"Bearer {token.token}")


async def test_wrong_secret_is_a_client_authentication_error(simulator: RunningSimulator) -> None:
    async with build_credential(
        tenant_id="contoso",
        client_id=simulator.state.client_id,
        client_secret="nope",
        authority_host=simulator.authority,
        ca_bundle=str(simulator.ca_file),
    ) as credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
            await credential.get_token(SCOPE)


async def test_certificate_credential_signs_an_assertion_the_simulator_accepts(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    pem_path, cert_pem = make_client_certificate(tmp_path, "cert-client")
    simulator.state.auth.add_client("cert-client", certificate_pem=cert_pem)
    credential = build_credential(
        tenant_id="contoso",
        client_id="cert-client",
        certificate_path=str(pem_path),
        authority_host=simulator.authority,
        ca_bundle=str(simulator.ca_file),
    )
    assert isinstance(credential, CertificateCredential)
    async with GraphClient(
        credential_factory=lambda: credential,
        base_url=simulator.base_url,
        ca_bundle=str(simulator.ca_file),
    ) as client:
        assert await client.fetch_domains()


async def test_certificate_of_another_client_is_refused(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    pem_path, _ = make_client_certificate(tmp_path, "intruder")
    _, registered = make_client_certificate(tmp_path / "other", "cert-client")
    simulator.state.auth.add_client("cert-client", certificate_pem=registered)
    async with build_credential(
        tenant_id="contoso",
        client_id="cert-client",
        certificate_path=str(pem_path),
        authority_host=simulator.authority,
        ca_bundle=str(simulator.ca_file),
    ) as credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
            await credential.get_token(SCOPE)


def test_sync_msal_credential_uses_openid_discovery(simulator: RunningSimulator) -> None:
    """MSAL (sync credentials) first reads the OpenID configuration, then the token endpoint."""
    credential = SyncClientSecretCredential(
        "contoso",
        simulator.state.client_id,
        simulator.state.client_secret,
        authority=simulator.authority,
        disable_instance_discovery=True,
        connection_verify=str(simulator.ca_file),
    )
    with credential:
        assert credential.get_token(SCOPE).token


async def test_without_secret_or_certificate_default_credential_is_built() -> None:
    credential = build_credential(tenant_id="contoso", client_id="app")
    assert isinstance(credential, DefaultAzureCredential)
    await credential.close()


async def test_client_from_settings_reaches_the_simulator(simulator: RunningSimulator) -> None:
    settings = GraphSettings(
        tenant_id="contoso",
        client_id=simulator.state.client_id,
        client_secret=SecretStr(simulator.state.client_secret),
        base_url=simulator.base_url,
        authority_host=simulator.authority,
        ca_bundle=str(simulator.ca_file),
    )
    async with GraphClient.from_settings(settings) as client:
        domains = await client.fetch_domains()
    assert {d["id"] for d in domains} >= {"contoso.com"}

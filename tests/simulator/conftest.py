"""The Graph simulator served over HTTPS from a background thread, and an httpx client for it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec, start_in_thread


@pytest.fixture(scope="session")
def sim_cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-certs")


@pytest.fixture
def sim_state() -> SimulatorState:
    return SimulatorState.seeded(
        TenantSpec(users=120, groups=20, contacts=10, memberships=600),
        seed=11,
        page_size=25,
        members_page_size=10,
    )


@pytest.fixture
def sim(sim_state: SimulatorState, sim_cert_dir: Path) -> Iterator[RunningSimulator]:
    running = start_in_thread(sim_state, cert_dir=sim_cert_dir)
    yield running
    running.stop()


@pytest.fixture
def http(sim: RunningSimulator) -> Iterator[httpx.Client]:
    """A client with a valid bearer token, trusting only the simulator's CA."""
    context = ssl.create_default_context(cafile=str(sim.ca_file))
    with httpx.Client(verify=context, base_url=sim.origin) as client:
        answer = client.post(
            f"/{sim.state.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sim.state.client_id,
                "client_secret": sim.state.client_secret,
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        answer.raise_for_status()
        client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        yield client

"""A small seeded tenant on the session's Graph simulator, and an httpx client for it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec
from tests.graph_simulator import SimulatorServer, running_simulator


@pytest.fixture
def sim_state() -> SimulatorState:
    return SimulatorState.seeded(
        TenantSpec(users=120, groups=20, contacts=10, memberships=600),
        seed=11,
        page_size=25,
        members_page_size=10,
    )


@pytest.fixture
def sim(
    request: pytest.FixtureRequest, sim_state: SimulatorState, simulator_server: SimulatorServer
) -> Iterator[RunningSimulator]:
    """This test's tenant on the session's simulator server (tests/graph_simulator.py)."""
    with running_simulator(request, simulator_server, sim_state) as running:
        yield running


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

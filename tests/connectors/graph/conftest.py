"""The Graph simulator over real HTTPS, a GraphClient on the real SDK, and a tiny in-memory mirror.

The mirror applies ChangeSets the way the directory must (upsert by id, tolerant deletes,
memberships as a set of pairs), so these tests check the connector without a database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.base import ChangeSet, RecipientRecord
from app.connectors.graph.client import GraphClient
from app.connectors.graph.credentials import CredentialFactory, build_credential
from app.connectors.graph.mapping import accepted_domains, map_page
from app.connectors.graph.source import GraphSource
from app.directory.records import SourceKind
from app.settings import GraphSettings
from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec
from tests.factories import make_connector
from tests.graph_simulator import SimulatorServer, running_simulator


@pytest.fixture
def simulator_state() -> SimulatorState:
    """A small but complete tenant; small pages so every test crosses several pages."""
    return SimulatorState.seeded(
        TenantSpec(users=300, groups=40, contacts=30, memberships=1500),
        seed=7,
        page_size=40,
        members_page_size=25,
    )


@pytest.fixture
def simulator(
    request: pytest.FixtureRequest,
    simulator_state: SimulatorState,
    simulator_server: SimulatorServer,
) -> Iterator[RunningSimulator]:
    """This test's tenant on the session's simulator server (tests/graph_simulator.py)."""
    with running_simulator(request, simulator_server, simulator_state) as running:
        yield running


@pytest.fixture
def credential_factory(simulator: RunningSimulator) -> CredentialFactory:
    state = simulator.state

    def make():  # type: ignore[no-untyped-def]
        return build_credential(
            tenant_id=state.tenant_id,
            client_id=state.client_id,
            client_secret=state.client_secret,
            authority_host=simulator.authority,
            ca_bundle=str(simulator.ca_file),
        )

    return make


@pytest.fixture
async def graph_client(
    simulator: RunningSimulator, credential_factory: CredentialFactory
) -> AsyncIterator[GraphClient]:
    client = GraphClient(
        credential_factory=credential_factory,
        base_url=simulator.base_url,
        ca_bundle=str(simulator.ca_file),
        default_retry_delay=5.0,
    )
    yield client
    await client.aclose()


@dataclass
class Mirror:
    """What the directory would hold after applying every page, per resource."""

    accepted: frozenset[str] = frozenset()
    records: dict[str, RecipientRecord] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    skipped: int = 0
    pages: int = 0

    def apply(self, changes: ChangeSet) -> None:
        for record in changes.upserts:
            self.records[record.external_id] = record
        for obj_id in changes.deletes:
            self.records.pop(obj_id, None)
            self.members.pop(obj_id, None)
        for group, members in changes.member_adds.items():
            self.members.setdefault(group, set()).update(members)
        for group, members in changes.member_removes.items():
            self.members.get(group, set()).difference_update(members)

    async def run(self, client: GraphClient, resource: str, url: str | None = None) -> str:
        """One round from `url` (default: a full round); returns the new deltaLink."""
        if not self.accepted:
            self.accepted = accepted_domains(await client.fetch_domains())
        async for page in client.iter_pages(url or client.initial_delta_url(resource)):
            mapped = map_page(resource, page.objects, accepted=self.accepted)
            self.apply(mapped.changes)
            self.skipped += mapped.skipped + page.dropped
            self.pages += 1
            if page.delta_link is not None:
                return page.delta_link
        raise AssertionError("the round ended without a deltaLink")

    def accepted_map(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for record in self.records.values():
            primary = (record.primary or (record.addresses[0] if record.addresses else "")).lower()
            for address in record.addresses:
                result[address.lower()] = primary
        return result

    def member_sets(self) -> dict[str, set[str]]:
        return {gid: members for gid, members in self.members.items() if members}


@pytest.fixture
def mirror() -> Mirror:
    return Mirror()


# A Graph connector row and a GraphSource on this test's simulated tenant, for tests that sync it
# into a real database (test_graph_source.py, test_connector_runs.py).
@pytest.fixture
def graph_settings(simulator: RunningSimulator) -> GraphSettings:
    state = simulator.state
    return GraphSettings(
        tenant_id=state.tenant_id,
        client_id=state.client_id,
        client_secret=state.client_secret,
        base_url=simulator.base_url,
        authority_host=simulator.authority,
        ca_bundle=str(simulator.ca_file),
    )


@pytest.fixture
async def source(graph_settings: GraphSettings) -> AsyncIterator[GraphSource]:
    source = GraphSource(graph_settings)
    yield source
    await source.aclose()


@pytest.fixture
async def connector_id(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, name="graph", ready=False)
        return connector.id

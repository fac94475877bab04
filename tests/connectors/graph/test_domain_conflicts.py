"""A Graph connection whose /domains lists a domain another tenant owns: it does not take it,
its status names the domain and the owner, its other domains sync; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.api.routes.connectors import ConnectorStatus
from app.connectors import status
from app.connectors.graph.config import GraphSettings
from app.connectors.graph.source import GraphSource
from app.connectors.runner import RunnerOptions, run_cycle
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex
from app.directory.models import Connector, Domain, Tenant
from app.directory.records import SourceKind
from app.directory.tenants import add_domain, ensure_tenant, remove_domain
from app.directory.verdicts import Reason, Verdict
from app.simulator.graph import RunningSimulator
from tests.factories import make_connector, make_recipient

TAKEN = "contoso-brand.net"  # one of the simulated tenant's verified Email domains


async def no_sleep(delay: float) -> None:
    return None


@pytest.fixture
async def source(simulator: RunningSimulator) -> AsyncIterator[GraphSource]:
    state = simulator.state
    source = GraphSource(
        GraphSettings(
            tenant_id=state.tenant_id,
            client_id=state.client_id,
            client_secret=state.client_secret,
            base_url=simulator.base_url,
            authority_host=simulator.authority,
            ca_bundle=str(simulator.ca_file),
        )
    )
    yield source
    await source.aclose()


async def load_index(engine: AsyncEngine) -> LookupIndex:
    index = LookupIndex()
    await IndexSync(index, engine).load()
    return index


async def connector_status(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> ConnectorStatus:
    """What `GET /v1/connectors` and `roster status` show for the connector."""
    async with sessionmaker() as session:
        row = await session.get(Connector, connector_id)
        assert row is not None
        return ConnectorStatus.model_validate(await status.describe_one(session, row))


async def roster_status(database_url: str, *args: str) -> str:
    """`roster status` as an operator runs it, in its own process."""
    env = os.environ | {"ROSTER_DATABASE_URL": database_url, "COLUMNS": "400"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def domains_of(sessionmaker: async_sessionmaker[AsyncSession], tenant: str) -> set[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Domain.name)
            .join(Tenant, Tenant.id == Domain.tenant_id)
            .where(Tenant.name == tenant)
        )
        return set(rows)


async def test_a_domain_owned_by_another_tenant_is_named_in_the_status_and_the_rest_syncs(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    database_url: str,
    source: GraphSource,
    simulator: RunningSimulator,
) -> None:
    state = simulator.state
    assert TAKEN in state.store.accepted_domains()
    async with sessionmaker.begin() as session:
        fabrikam = await ensure_tenant(session, "fabrikam")
        await add_domain(session, fabrikam, TAKEN)
        manual = await make_connector(session, SourceKind.MANUAL, tenant="fabrikam")
        await make_recipient(session, manual, external_id="m1", addresses=[f"sales@{TAKEN}"])
        graph = await make_connector(session, SourceKind.GRAPH, name="graph", ready=False)
        graph_id = graph.id

    options = RunnerOptions(sleep=no_sleep)
    report = await run_cycle(sessionmaker, graph_id, source, options=options)
    assert report.ok, report.error

    shown = await connector_status(sessionmaker, graph_id)
    assert shown.warnings == [f"domain {TAKEN} is owned by tenant fabrikam"]
    assert shown.state == "ready" and shown.last_error is None
    assert await domains_of(sessionmaker, "default") == state.store.accepted_domains() - {TAKEN}
    assert await domains_of(sessionmaker, "fabrikam") == {TAKEN}
    listed = json.loads(await roster_status(database_url, "--json"))
    assert [i["warnings"] for i in listed if i["kind"] == "graph"] == [shown.warnings]
    assert f"domain {TAKEN} is owned by tenant fabrikam" in await roster_status(database_url)

    index = await load_index(engine)
    expected = state.expected_accepted()
    for address, primary in expected.items():
        answer = index.lookup(address)
        if address.endswith("@" + TAKEN):
            # Routed to the owner, who does not know the simulated tenant's people.
            assert answer.tenant == "fabrikam", address
            assert answer.verdict is not Verdict.ACCEPT or address == f"sales@{TAKEN}", address
        else:
            assert (answer.verdict, answer.tenant, answer.primary) == (
                Verdict.ACCEPT,
                "default",
                primary,
            ), address
    owner = index.lookup(f"sales@{TAKEN}")
    assert (owner.verdict, owner.tenant) == (Verdict.ACCEPT, "fabrikam")
    stranger = index.lookup(f"nobody-here@{TAKEN}")
    assert (stranger.verdict, stranger.reason, stranger.tenant) == (
        Verdict.REJECT,
        Reason.UNKNOWN_RECIPIENT,
        "fabrikam",
    )
    assert any(a.endswith("@" + TAKEN) for a in expected)  # the loop above covered the domain

    # A second round keeps the warning (progress is rewritten every round).
    assert (await run_cycle(sessionmaker, graph_id, source, options=options)).ok
    assert (await connector_status(sessionmaker, graph_id)).warnings == [
        f"domain {TAKEN} is owned by tenant fabrikam"
    ]

    # The owner lets go: the next round takes the domain and the warning is gone.
    async with sessionmaker.begin() as session:
        await remove_domain(session, TAKEN)
    assert (await run_cycle(sessionmaker, graph_id, source, options=options)).ok
    assert (await connector_status(sessionmaker, graph_id)).warnings == []
    assert await domains_of(sessionmaker, "default") == state.store.accepted_domains()
    async with sessionmaker() as session:
        row = await session.get(Connector, graph_id)
        assert row is not None and "domain_conflicts" not in (row.progress or {})

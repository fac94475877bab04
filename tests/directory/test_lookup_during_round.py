"""Lookups stay right while a large Graph round writes to the same database.

A gateway asks for every RCPT while rounds run, so a round must never make a present address
look absent, nor an absent one present. The round here is a full re-read of a few thousand users
(the delta token expired) plus new users, on small pages, in the background; meanwhile the test
asks the app over HTTP for addresses known to be present (manual users the round does not
touch, users of the first round that Graph still has) and known to be absent, and checks each
answer. The tenant is ready throughout, so no answer may even be a tempfail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.graph.source import GraphSource
from app.connectors.runner import RunnerOptions, run_cycle
from app.directory.records import SourceKind
from app.settings import GraphSettings
from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec
from tests.factories import api_domain, api_key, auth, make_connector
from tests.graph_simulator import SimulatorServer, running_simulator

MANUAL = [f"manual{n}@manual.example" for n in range(20)]


@pytest.fixture
def simulator(
    request: pytest.FixtureRequest, simulator_server: SimulatorServer
) -> Iterator[RunningSimulator]:
    state = SimulatorState.seeded(
        TenantSpec(users=2_000, groups=50, contacts=50, memberships=4_000),
        seed=21,
        page_size=25,
        members_page_size=50,
    )
    with running_simulator(request, simulator_server, state) as running:
        yield running


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


async def no_sleep(_: float) -> None:
    return None


def verdict_is_right(address: str, answer: httpx.Response, present: set[str]) -> bool:
    """Present: accepted. Absent: rejected, or deferred while the tenant is not ready."""
    if address in present:
        return answer.status_code == 200
    if answer.status_code == 503:
        return bool(answer.json()["reason"] == "not_ready")
    return answer.status_code == 404 and answer.json()["reason"] == "unknown_recipient"


@pytest.mark.parametrize("kind", ["incremental", "full"])
async def test_lookups_stay_correct_while_a_large_round_writes(
    client: httpx.AsyncClient,
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
    simulator: RunningSimulator,
    source: GraphSource,
    kind: str,
) -> None:
    key = await api_key(app, "write")
    await api_domain(client, key, "manual.example")
    for address in MANUAL:
        created = await client.post("/v1/users", json={"email": address}, headers=auth(key))
        assert created.status_code == 201, created.text
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, name="graph", ready=False)
        connector_id = connector.id
    options = RunnerOptions(sleep=no_sleep)
    first = await run_cycle(sessionmaker, connector_id, source, options=options)
    assert first.ok, first.error

    state = simulator.state
    domain = sorted(state.store.accepted_domains())[0]
    users = [u for u in state.store.live["users"].values() if u.get("mail")]
    leaving = users[:100]  # deleted in this round: not checked while it runs
    gone = {a for u in leaving for a, _ in _addresses(state, u["id"])}
    synced = sorted(set(state.expected_accepted()) - gone)
    for user in users[100:600]:  # rewritten in this round: a new alias each, same primary
        state.add_alias(user["id"], f"alias.{user['id'][:8]}@{domain}")
    present = set(MANUAL + synced[:: max(1, len(synced) // 60)])
    absent = {f"nobody{n}@{domain}" for n in range(20)} | {
        f"ghost{n}@manual.example" for n in range(5)
    }
    assert not absent & set(state.expected_accepted())
    await wait_until_answered(client, key, sorted(present)[-1], 200)  # the first round is visible
    await wait_until_ready(client)  # and the index knows the tenant is ready
    for user in leaving:
        state.delete(user["id"])
    for n in range(1_500):
        state.add_user(mail=f"newcomer{n}@{domain}")
    if kind == "full":
        state.expire_delta_tokens()  # the round re-reads every user, then sweeps

    pages: list[int] = []
    round_task = asyncio.create_task(
        run_cycle(
            sessionmaker,
            connector_id,
            source,
            options=options,
            on_page=lambda stream, count, objects: pages.append(count),
        )
    )
    checks = deferred = 0
    pages_seen: set[int] = set()
    wrong: list[tuple[str, int, str]] = []
    asked = sorted(present | absent)
    while not round_task.done():
        for address in asked:
            answer = await client.get(f"/v1/recipients/{address}", headers=auth(key))
            if not verdict_is_right(address, answer, present):
                wrong.append((address, answer.status_code, answer.text))
            deferred += answer.status_code == 503
            checks += 1
            pages_seen.add(len(pages))
            # An in-process lookup never waits on I/O: yield, or the round would starve.
            await asyncio.sleep(0)
    report = await round_task
    assert report.ok, report.error
    assert wrong == [], wrong[:5]
    if kind == "incremental":
        assert deferred == 0  # the tenant stayed ready: every absent address was rejected
        assert report.objects >= 2_000
    else:
        assert report.objects >= 3_000
    # The lookups really overlapped the round: they ran between many different pages.
    assert len(pages_seen) >= 5, (pages_seen, len(pages))
    assert checks >= 2 * len(asked)

    # Once the round is done: newcomers accepted, leavers and absent addresses rejected.
    await wait_until_answered(client, key, f"newcomer1499@{domain}", 200)
    for address in sorted(absent | gone):
        answer = await client.get(f"/v1/recipients/{address}", headers=auth(key))
        assert answer.status_code == 404, answer.text
    for address in sorted(present):
        answer = await client.get(f"/v1/recipients/{address}", headers=auth(key))
        assert answer.status_code == 200, answer.text


def _addresses(state: SimulatorState, user_id: str) -> list[tuple[str, str]]:
    """Every address of one user the mirror accepts, with its primary."""
    user = state.store.live["users"][user_id]
    expected = state.expected_accepted()
    mine = {user.get("mail", "").lower()} | {
        p.partition(":")[2].lower() for p in user["proxyAddresses"] if p.lower().startswith("smtp:")
    }
    return [(a, expected[a]) for a in mine if a in expected]


async def wait_until_ready(client: httpx.AsyncClient, limit: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while (answer := await client.get("/readyz")).status_code != 200:
        assert loop.time() < deadline, answer.text
        await asyncio.sleep(0.05)


async def wait_until_answered(
    client: httpx.AsyncClient, key: str, address: str, status: int, limit: float = 60.0
) -> None:
    """The index poller publishes a commit within a poll or two: wait, with a generous bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        answer = await client.get(f"/v1/recipients/{address}", headers=auth(key))
        if answer.status_code == status:
            return
        assert loop.time() < deadline, answer.text
        await asyncio.sleep(0.05)

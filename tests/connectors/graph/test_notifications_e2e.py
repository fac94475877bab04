"""End to end: a change in the simulator reaches HTTP lookups through a change notification.

The whole `roster serve` stack runs on a real socket (workers with GraphSource, inbox drainer,
subscription manager); the scheduled poll is a day away, so only notifications can explain a
lookup that changes within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.apikeys import create_key
from app.connectors.graph.models import GraphSubscription, WebhookInbox
from app.connectors.graph.secrets import ClientStateCipher
from app.connectors.registry import ensure_env_connectors
from app.directory.models import Change
from app.settings import Settings
from app.simulator.graph import RunningSimulator
from app.simulator.graph.subscriptions import SubscriptionService, subscription_service
from tests.connectors.graph.test_notifications import (
    SECRET,
    eventually,
    free_port,
    graph_settings,
    serve,
)

# Graph polling is set to once a day here, so a change that reaches lookups at all came through a
# notification; how fast it does is bench/graph_notify_bench.py's measure, not a test's.
CHANGE_WAIT = 60.0


@dataclass
class Live:
    app: FastAPI
    sim: RunningSimulator
    service: SubscriptionService
    http: httpx.AsyncClient
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings

    @property
    def domain(self) -> str:
        return sorted(self.sim.state.store.accepted_domains())[0]

    @property
    def worker(self) -> Any:
        return next(iter(self.app.state.workers.values()))

    async def verdict(self, address: str) -> str:
        answer = await self.http.get(f"/v1/recipients/{address}")
        verdict: str = answer.json()["verdict"]
        return verdict

    async def wait_verdict(self, address: str, verdict: str, limit: float = CHANGE_WAIT) -> float:
        async def check() -> bool:
            return await self.verdict(address) == verdict

        return await eventually(check, limit)

    async def subscriptions(self) -> list[GraphSubscription]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(GraphSubscription)))

    async def pending(self) -> int:
        async with self.sessionmaker() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(WebhookInbox)
                .where(WebhookInbox.handled_at.is_(None))
            )
        return int(count or 0)

    async def last_change(self) -> int:
        async with self.sessionmaker() as session:
            return int(await session.scalar(select(func.max(Change.seq))) or 0)

    async def settled(self) -> None:
        """First round done, both subscriptions live, nothing pending, no cycle running."""

        async def check() -> bool:
            return (
                len(self.service.all()) == 2
                and len(await self.subscriptions()) == 2
                and await self.pending() == 0
                and self.service.pending() == 0
            )

        await eventually(check, 30)
        sample = next(iter(self.sim.state.expected_accepted()))
        await self.wait_verdict(sample, "accept", 30)
        cycles = -1
        while cycles != self.worker.cycles:  # quiet for a moment: no cycle is under way
            cycles = self.worker.cycles
            await asyncio.sleep(0.3)


def live_settings(settings: Settings, simulator: RunningSimulator, port: int) -> Settings:
    return settings.model_copy(
        update={
            "secret_key": SecretStr(SECRET),
            "public_url": f"http://127.0.0.1:{port}",
            "graph": graph_settings(
                simulator, poll_interval=timedelta(days=1), streams=["users", "groups"]
            ),
        }
    )


@contextlib.asynccontextmanager
async def live_roster(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    simulator: RunningSimulator,
) -> AsyncIterator[Live]:
    async with sessionmaker.begin() as session:
        _, key = await create_key(session, "e2e", ["lookup"])
    service = subscription_service(simulator.state)
    async with (
        serve(settings) as app,
        httpx.AsyncClient(
            base_url=str(settings.public_url), headers={"Authorization": f"Bearer {key}"}
        ) as http,
    ):
        live = Live(app, simulator, service, http, sessionmaker, settings)
        await live.settled()
        yield live


@pytest.fixture
async def live(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    simulator: RunningSimulator,
) -> AsyncIterator[Live]:
    async with live_roster(
        live_settings(settings, simulator, free_port()), sessionmaker, simulator
    ) as running:
        yield running
    subscription_service(simulator.state).stop()


async def test_created_aliased_and_deleted_users_reach_lookups_through_notifications(
    live: Live,
) -> None:
    state = live.sim.state
    address = f"fresh.user@{live.domain}"
    alias = f"fresh.alias@{live.domain}"
    assert await live.verdict(address) == "reject"
    cycles = live.worker.cycles

    user = state.add_user(mail=address, displayName="Fresh User")
    await live.wait_verdict(address, "accept", CHANGE_WAIT)

    state.add_alias(user["id"], alias)
    await live.wait_verdict(alias, "accept", CHANGE_WAIT)

    state.delete(user["id"])
    await live.wait_verdict(address, "reject", CHANGE_WAIT)
    assert await live.verdict(alias) == "reject"
    assert live.service.stats.delivered >= 3
    await eventually(_cycles_above(live, cycles))  # rounds asked for by notifications
    await eventually(lambda: _zero(live))


async def _zero(live: Live) -> bool:
    return await live.pending() == 0


def _cycles_above(live: Live, cycles: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(live.worker.cycles > cycles)

    return check


async def test_forged_and_replayed_notifications_change_nothing(live: Live) -> None:
    subs = {row.resource: row for row in await live.subscriptions()}
    users = subs["/users"]
    notify_url = live.app.state.graph_webhooks.managers[0].notification_url
    before = await live.last_change()
    cycles = live.worker.cycles
    stats = live.app.state.graph_webhooks.stats

    # forge() is a blocking client and the server runs in this event loop: use a thread.
    forge = live.service.forge
    assert await asyncio.to_thread(forge, notify_url, subscription_id=users.id,
                                   client_state="guess") == 202  # fmt: skip
    assert await asyncio.to_thread(forge, notify_url) == 202  # an unknown subscription
    assert (stats.bad_client_state, stats.unknown_subscription) == (1, 1)
    assert await live.pending() == 0

    # A replay of a genuine notification (right clientState): at most one more delta round,
    # which finds nothing new.
    secret = ClientStateCipher(SecretStr(SECRET)).decrypt(
        users.client_state_encrypted, subscription_id=users.id, connector_id=users.connector_id
    )
    target = next(iter(live.sim.state.store.live["users"]))
    item = {
        "subscriptionId": users.id,
        "changeType": "updated",
        "resource": f"Users/{target}",
        "clientState": secret,
        "tenantId": live.sim.state.tenant_id,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
    }
    body = orjson.dumps({"value": [item]})
    for _ in range(3):
        answer = await live.http.post(
            "/v1/graph/notifications",
            content=body,
            headers={"Authorization": "", "Content-Type": "application/json"},
        )
        assert answer.status_code == 202
    await eventually(lambda: _zero(live))
    assert await live.last_change() == before  # the mirror did not move
    assert live.worker.cycles - cycles <= 3


async def test_a_burst_of_notifications_coalesces_into_a_few_rounds(live: Live) -> None:
    users = next(row for row in await live.subscriptions() if row.resource == "/users")
    secret = ClientStateCipher(SecretStr(SECRET)).decrypt(
        users.client_state_encrypted, subscription_id=users.id, connector_id=users.connector_id
    )
    cycles = live.worker.cycles

    async def post(start: int) -> None:
        items = [
            {"subscriptionId": users.id, "changeType": "updated", "clientState": secret,
             "resource": f"Users/{n}", "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z"}
            for n in range(start, start + 10)
        ]  # fmt: skip
        answer = await live.http.post("/v1/graph/notifications", json={"value": items})
        assert answer.status_code == 202

    await asyncio.gather(*(post(n * 10) for n in range(100)))  # 1,000 notifications
    await eventually(lambda: _zero(live), 30)
    # Rows are marked when their stream's round commits; the cycle counter moves at its end.
    await eventually(_cycles_above(live, cycles))
    await asyncio.sleep(1.0)
    rounds = live.worker.cycles - cycles
    assert 1 <= rounds <= 5, rounds


async def test_each_lifecycle_event_keeps_changes_flowing(live: Live) -> None:
    state = live.sim.state
    users = next(row for row in await live.subscriptions() if row.resource == "/users")

    # reauthorizationRequired: Graph holds notifications until Roster reauthorizes.
    live.service.send_lifecycle(users.id, "reauthorizationRequired")
    state.add_user(mail=f"held@{live.domain}")
    await live.wait_verdict(f"held@{live.domain}", "accept")
    assert not live.service.get(users.id).needs_reauthorization

    # missed: the notification was lost; the lifecycle event alone brings the change.
    live.service.lose_next(1)
    state.add_user(mail=f"missed@{live.domain}")
    live.service.send_lifecycle(users.id, "missed")
    await live.wait_verdict(f"missed@{live.domain}", "accept")

    # subscriptionRemoved: a new subscription replaces it, and later changes still arrive.
    live.service.send_lifecycle(users.id, "subscriptionRemoved")

    async def replaced() -> bool:
        rows = {row.resource: row.id for row in await live.subscriptions()}
        return rows.get("/users") not in (None, users.id) and len(live.service.all()) == 2

    await eventually(replaced)
    state.add_user(mail=f"after@{live.domain}")
    await live.wait_verdict(f"after@{live.domain}", "accept", CHANGE_WAIT)


async def test_a_restart_keeps_working_subscriptions(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    simulator: RunningSimulator,
) -> None:
    roster = live_settings(settings, simulator, free_port())
    async with live_roster(roster, sessionmaker, simulator) as first:
        ids = {row.id for row in await first.subscriptions()}
    async with live_roster(roster, sessionmaker, simulator) as second:
        manager = second.app.state.graph_webhooks.managers[0]
        await eventually(_reconciled(manager))
        assert {row.id for row in await second.subscriptions()} == ids
        assert {s.id for s in second.service.all()} == ids
        simulator.state.add_user(mail=f"after.restart@{second.domain}")
        await second.wait_verdict(f"after.restart@{second.domain}", "accept", CHANGE_WAIT)
    subscription_service(simulator.state).stop()


def _reconciled(manager: Any) -> Any:
    async def check() -> bool:
        return manager._verified_at is not None  # compared with Graph's list at least once

    return check


@pytest.fixture
async def roster_processes(
    database_url: str,
    settings: Settings,
    simulator: RunningSimulator,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL database")
    ports = [free_port(), free_port()]
    # The tenant and connector rows exist before both replicas start, as in any deployment
    # past its first start: ensure_env_connectors itself is not safe against a start-up race.
    async with sessionmaker.begin() as session:
        await ensure_env_connectors(session, live_settings(settings, simulator, ports[0]))
    state = simulator.state
    env = os.environ | {
        "ROSTER_DATABASE_URL": database_url,
        # Replicas sit behind one load balancer: one public URL (here, the first replica).
        "ROSTER_PUBLIC_URL": f"http://127.0.0.1:{ports[0]}",
        "ROSTER_SECRET_KEY": SECRET,
        "ROSTER_GRAPH__TENANT_ID": state.tenant_id,
        "ROSTER_GRAPH__CLIENT_ID": state.client_id,
        "ROSTER_GRAPH__CLIENT_SECRET": state.client_secret,
        "ROSTER_GRAPH__BASE_URL": simulator.base_url,
        "ROSTER_GRAPH__AUTHORITY_HOST": simulator.authority,
        "ROSTER_GRAPH__CA_BUNDLE": str(simulator.ca_file),
        "ROSTER_GRAPH__POLL_INTERVAL": "P1D",
        "ROSTER_GRAPH__STREAMS": "users,groups",
    }
    procs = []
    logs = []
    for n, port in enumerate(ports):
        log = (tmp_path / f"serve-{n}.log").open("wb")
        logs.append(log)
        procs.append(
            subprocess.Popen(  # noqa: ASYNC220 - starting a process does not wait for it
                [sys.executable, "-m", "app", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        for port, proc in zip(ports, procs, strict=True):
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    async with httpx.AsyncClient(timeout=1) as probe:
                        if (await probe.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                            break
                assert proc.poll() is None, (
                    tmp_path / f"serve-{procs.index(proc)}.log"
                ).read_text()
                assert time.monotonic() < deadline, "roster serve did not come up"
                await asyncio.sleep(0.1)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        for log in logs:
            log.close()
        subscription_service(simulator.state).stop()


async def test_two_replicas_on_one_database_create_one_set_of_subscriptions(
    roster_processes: list[subprocess.Popen[bytes]],
    simulator: RunningSimulator,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    service = subscription_service(simulator.state)

    async def created() -> bool:
        async with sessionmaker() as session:
            rows = await session.scalar(select(func.count()).select_from(GraphSubscription))
        return rows == 2 and len(service.all()) == 2

    await eventually(created, 60)
    await asyncio.sleep(8)  # both managers have run several passes (busy retries every 2 s)
    assert all(proc.poll() is None for proc in roster_processes)
    assert len(service.all()) == 2
    assert sorted(s.resource for s in service.all()) == ["/groups", "/users"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(GraphSubscription)) == 2

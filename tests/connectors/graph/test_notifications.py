"""The subscription manager against the simulator, with Roster's webhooks on real HTTP.

Graph (the simulator) calls Roster for the validation handshake and the notifications; Roster
calls Graph for the subscription CRUD through the real msgraph-sdk. The clock is injected, and
the simulator's subscription clock is moved with it, so renewals are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import leases
from app.connectors.graph.models import GraphSubscription, WebhookInbox
from app.connectors.graph.realtime import subscription_client_factory, unsubscribe
from app.connectors.graph.secrets import ClientStateCipher
from app.connectors.graph.subscription_client import GraphSubscriptionClient, SubscriptionGone
from app.connectors.graph.subscriptions import ManagerOptions, SubscriptionManager, webhook_urls
from app.directory.records import SourceKind
from app.main import create_asgi
from app.settings import GraphSettings, Settings
from app.simulator.graph import RunningSimulator
from app.simulator.graph.subscriptions import SubscriptionService, subscription_service
from tests.factories import make_connector

SECRET = "notification-tests-secret-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def graph_settings(sim: RunningSimulator, **extra: Any) -> GraphSettings:
    state = sim.state
    return GraphSettings(
        tenant_id=state.tenant_id,
        client_id=state.client_id,
        client_secret=SecretStr(state.client_secret),
        base_url=sim.base_url,
        authority_host=sim.authority,
        ca_bundle=str(sim.ca_file),
        **extra,
    )


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[FastAPI]:
    """`roster serve`'s ASGI stack on a real socket, in this event loop (lifespan included)."""
    assert settings.public_url is not None
    port = int(settings.public_url.rsplit(":", 1)[1])
    asgi = create_asgi(settings)
    config = uvicorn.Config(
        asgi, host="127.0.0.1", port=port, lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        assert not task.done(), "the server stopped during start-up"
        assert time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.02)
    try:
        yield asgi.app.app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


async def eventually(check: Callable[[], Awaitable[bool]], limit: float = 30.0) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < limit, "condition not reached in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class Clock:
    def __init__(self, service: SubscriptionService) -> None:
        self.now = datetime.now(UTC)
        self.service = service

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
        self.service.advance(delta)


@dataclass
class Harness:
    manager: SubscriptionManager
    clock: Clock
    service: SubscriptionService
    sessionmaker: async_sessionmaker[AsyncSession]
    connector_id: str
    app: FastAPI

    async def rows(self) -> list[GraphSubscription]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(GraphSubscription)))

    async def inbox(self) -> list[WebhookInbox]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(WebhookInbox).order_by(WebhookInbox.id)))


@pytest.fixture
async def harness(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    simulator: RunningSimulator,
) -> AsyncIterator[Harness]:
    """Roster's API (webhooks) served for real; the manager driven by hand with a fake clock."""
    roster = settings.model_copy(
        update={
            "secret_key": SecretStr(SECRET),
            "public_url": f"http://127.0.0.1:{free_port()}",
            "run_connectors": False,
        }
    )
    service = subscription_service(simulator.state)
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, name="graph")
    async with serve(roster) as app:
        clock = Clock(service)
        assert roster.public_url is not None
        manager = SubscriptionManager(
            sessionmaker,
            connector.id,
            client_factory=subscription_client_factory(graph_settings(simulator)),
            public_url=roster.public_url,
            cipher=ClientStateCipher(SecretStr(SECRET)),
            registry=app.state.graph_webhooks.registry,
            options=ManagerOptions(start_delay=0),
            clock=clock,
        )
        yield Harness(manager, clock, service, sessionmaker, connector.id, app)
    service.stop()


async def test_one_subscription_per_resource_with_an_encrypted_client_state(
    harness: Harness,
) -> None:
    report = await harness.manager.reconcile()
    assert len(report.created) == 2
    remote = {s.resource: s for s in harness.service.all()}
    assert set(remote) == {"/users", "/groups"}
    rows = {row.resource: row for row in await harness.rows()}
    cipher = ClientStateCipher(SecretStr(SECRET))
    for resource, sub in remote.items():
        assert sub.change_types == {"updated", "deleted"}
        assert sub.notification_url == harness.manager.notification_url
        assert sub.lifecycle_url == harness.manager.lifecycle_url
        lifetime = sub.expiration - harness.clock()
        assert timedelta(minutes=41_600) < lifetime <= timedelta(minutes=41_760)
        row = rows[resource]
        assert row.id == sub.id
        assert sub.client_state is not None and len(sub.client_state) >= 32
        assert sub.client_state not in row.client_state_encrypted
        assert cipher.decrypt(row.client_state_encrypted, subscription_id=row.id,
                              connector_id=row.connector_id) == sub.client_state  # fmt: skip
    assert rows["/users"].client_state_encrypted != rows["/groups"].client_state_encrypted
    again = await harness.manager.reconcile()
    assert not again.changed
    assert len(harness.service.all()) == 2


async def test_renewal_happens_well_before_expiry(harness: Harness) -> None:
    await harness.manager.reconcile()
    before = {row.id: row.expires_at for row in await harness.rows()}
    harness.clock.advance(timedelta(hours=2))
    assert not (await harness.manager.reconcile()).changed  # fresh: nothing to do
    harness.clock.advance(timedelta(days=1))
    report = await harness.manager.reconcile()
    assert sorted(report.renewed) == sorted(before)
    for row in await harness.rows():
        assert row.expires_at > before[row.id] + timedelta(days=1)
        assert row.renewed_at == harness.clock()
    for sub in harness.service.all():
        assert sub.expiration - harness.clock() > timedelta(days=28)


async def test_a_subscription_near_expiry_is_renewed_even_with_a_long_renewal_period(
    harness: Harness,
) -> None:
    harness.manager.options.renew_after = timedelta(days=365)
    await harness.manager.reconcile()
    harness.clock.advance(timedelta(days=25))
    assert not (await harness.manager.reconcile()).renewed
    harness.clock.advance(timedelta(days=1))  # under 3 days left
    report = await harness.manager.reconcile()
    assert len(report.renewed) == 2
    assert {s.id for s in harness.service.all()} == {row.id for row in await harness.rows()}


async def test_a_subscription_graph_lost_is_recreated_after_the_404(harness: Harness) -> None:
    await harness.manager.reconcile()
    users = next(row for row in await harness.rows() if row.resource == "/users")
    harness.service.remove_silently(users.id)
    harness.clock.advance(timedelta(days=1, minutes=1))
    report = await harness.manager.reconcile()
    assert users.id in report.removed
    rows = {row.resource: row.id for row in await harness.rows()}
    assert rows["/users"] != users.id
    assert {s.id for s in harness.service.all()} == set(rows.values())


async def test_an_expired_subscription_is_replaced(harness: Harness) -> None:
    await harness.manager.reconcile()
    old = {row.id for row in await harness.rows()}
    harness.clock.advance(timedelta(days=30))
    report = await harness.manager.reconcile()
    assert len(report.created) == 2
    assert not old & {row.id for row in await harness.rows()}


async def lifecycle(harness: Harness, resource: str, event: str) -> GraphSubscription:
    await harness.manager.reconcile()
    row = next(r for r in await harness.rows() if r.resource == resource)
    harness.service.send_lifecycle(row.id, event)

    async def stored() -> bool:
        return any(r.kind.startswith("lifecycle:") for r in await harness.inbox())

    await eventually(stored)
    return row


async def test_reauthorization_required_is_answered_with_reauthorize(harness: Harness) -> None:
    row = await lifecycle(harness, "/users", "reauthorizationRequired")
    assert harness.service.get(row.id).needs_reauthorization
    report = await harness.manager.reconcile()
    assert report.reauthorized == [row.id]
    assert not harness.service.get(row.id).needs_reauthorization
    stored = next(r for r in await harness.rows() if r.id == row.id)
    assert stored.last_lifecycle_event == "reauthorizationRequired"
    await assert_event_handled_with_a_round(harness, "users")


async def test_subscription_removed_is_answered_with_a_new_subscription(
    harness: Harness,
) -> None:
    row = await lifecycle(harness, "/groups", "subscriptionRemoved")
    report = await harness.manager.reconcile()
    assert row.id in report.removed and len(report.created) == 1
    rows = {r.resource: r.id for r in await harness.rows()}
    assert rows["/groups"] != row.id
    assert {s.id for s in harness.service.all()} == set(rows.values())
    await assert_event_handled_with_a_round(harness, "groups")


async def test_missed_is_answered_with_a_delta_round(harness: Harness) -> None:
    row = await lifecycle(harness, "/users", "missed")
    report = await harness.manager.reconcile()
    assert report.events == 1 and not report.created and not report.removed
    stored = next(r for r in await harness.rows() if r.id == row.id)
    assert stored.last_lifecycle_event == "missed"
    await assert_event_handled_with_a_round(harness, "users")


async def assert_event_handled_with_a_round(harness: Harness, stream: str) -> None:
    rows = await harness.inbox()
    events = [r for r in rows if r.kind.startswith("lifecycle:")]
    assert events and all(r.handled_at is not None for r in events)
    follow_ups = [
        r for r in rows if r.kind == "change" and r.stream == stream and r.handled_at is None
    ]
    assert follow_ups, "a pending change row asks the drainer for a delta round"


async def test_only_the_lease_holder_manages_subscriptions(harness: Harness) -> None:
    async with harness.sessionmaker.begin() as session:
        assert await leases.claim(
            session, harness.connector_id, "other-replica", now=harness.clock()
        )
    report = await harness.manager.reconcile()
    assert report.busy
    assert harness.service.all() == []
    async with harness.sessionmaker.begin() as session:
        await leases.release(session, harness.connector_id, "other-replica")
    assert len((await harness.manager.reconcile()).created) == 2


async def test_an_orphan_at_graph_is_removed(harness: Harness) -> None:
    """A crash between Graph's 201 and our insert leaves a subscription nobody can verify."""
    await harness.manager.reconcile()
    row = (await harness.rows())[0]
    async with harness.sessionmaker.begin() as session:
        await session.delete(await session.get(GraphSubscription, row.id))
    harness.clock.advance(timedelta(hours=7))  # the periodic comparison with Graph's list
    report = await harness.manager.reconcile()
    assert row.id in report.removed
    assert len(harness.service.all()) == 2
    assert row.id not in {s.id for s in harness.service.all()}


async def test_unsubscribe_removes_them_at_graph_and_here(
    harness: Harness, simulator: RunningSimulator
) -> None:
    await harness.manager.reconcile()
    removed = await unsubscribe(
        harness.sessionmaker, subscription_client_factory(graph_settings(simulator))
    )
    assert len(removed) == 2
    assert harness.service.all() == []
    assert await harness.rows() == []


async def test_the_client_state_is_never_logged(
    harness: Harness, simulator: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await harness.manager.reconcile()
    simulator.state.add_user(mail="logged@contoso.com")

    async def delivered() -> bool:
        return bool(await harness.inbox()) and harness.service.pending() == 0

    await eventually(delivered)
    secrets = [s.client_state for s in harness.service.all()]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "graph subscription created" in text
    assert all(secret and secret not in text for secret in secrets)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://roster.example.com", True),
        ("https://roster.example.com/base/", True),
        ("http://127.0.0.1:8000", True),
        ("http://[::1]:8000", True),
        ("http://localhost:8000", True),
        ("http://roster.example.com", False),
        ("ftp://roster.example.com", False),
        ("roster.example.com", False),
    ],
)
def test_the_public_url_must_be_https_except_on_loopback(url: str, ok: bool) -> None:
    if ok:
        notify, lifecycle_url = webhook_urls(url)
        assert notify.endswith("/v1/graph/notifications") and "//v1" not in notify
        assert lifecycle_url.endswith("/v1/graph/lifecycle")
    else:
        with pytest.raises(ValueError, match="ROSTER_PUBLIC_URL"):
            webhook_urls(url)


async def test_subscription_client_maps_404_to_gone(simulator: RunningSimulator) -> None:

    async with GraphSubscriptionClient.from_settings(graph_settings(simulator)) as client:
        with pytest.raises(SubscriptionGone):
            await client.renew_subscription("nope", datetime.now(UTC) + timedelta(days=1))
        await client.delete_subscription("nope")  # deleting what is gone is fine
        assert await client.list_subscriptions() == []

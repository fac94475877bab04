"""On SQLite, the writers of one process queue for the database instead of timing out.

Every test here uses a SQLite file with a deliberately short busy timeout (BUSY seconds): a
writer that raced for SQLite's file lock instead of waiting its turn would fail with "database
is locked" while a slow transaction holds the lock for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.graph.inbox import InboxDrainer, InboxWriter
from app.connectors.graph.models import WebhookInbox
from app.connectors.graph.notifications import CHANGE
from app.connectors.graph.source import GraphSource
from app.connectors.runner import RunnerOptions, run_cycle
from app.db import sqlite_writer
from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade
from app.db.sqlite_writer import WriterQueue, is_database_busy, writer_queue
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex
from app.directory.models import Connector, Domain
from app.directory.records import SourceKind
from app.main import create_asgi
from app.settings import GraphSettings, Settings
from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec, start_in_thread
from tests.conftest import empty_tables
from tests.factories import api_domain, api_key, auth, make_connector, make_domain

BUSY = 0.5  # seconds of busy timeout: far shorter than the slow transactions below


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("writers") / "roster.db"
    url = f"sqlite+aiosqlite:///{path}?timeout={BUSY}"
    upgrade(url)
    return url


@pytest.fixture
def queue(sqlite_url: str) -> WriterQueue:
    return writer_queue(make_url(sqlite_url).database)


@pytest.fixture
async def writers(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(sqlite_url)
    yield create_sessionmaker(engine)
    await empty_tables(engine)
    await engine.dispose()


async def wait_until(condition: Callable[[], bool], what: str, bound: float = 60.0) -> None:
    """Poll; a generous bound turns a hang into a failure that says what never happened."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened within {bound:.0f} s: {what}")
        await asyncio.sleep(0.02)


async def hold_a_write(
    sessionmaker: async_sessionmaker[AsyncSession],
    domain: str,
    *,
    written: asyncio.Event,
    release: Callable[[], bool],
    linger: float = 0.0,
) -> None:
    """A write transaction kept open until `release()` holds, then `linger` seconds more."""
    async with sessionmaker.begin() as session:
        await make_domain(session, domain)
        await session.flush()
        written.set()
        await wait_until(release, "the slow writer was let go")
        await asyncio.sleep(linger)


async def domains(sessionmaker: async_sessionmaker[AsyncSession]) -> set[str]:
    async with sessionmaker() as session:
        return set(await session.scalars(select(Domain.name)))


# ---- the writers of `roster serve` behind a slow transaction


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[RunningSimulator]:
    state = SimulatorState.seeded(
        TenantSpec(users=300, groups=40, contacts=30, memberships=1500),
        seed=7,
        page_size=40,
        members_page_size=25,
    )
    running = start_in_thread(state, cert_dir=tmp_path / "certs")
    yield running
    running.stop()


def graph_settings(simulator: RunningSimulator) -> GraphSettings:
    state = simulator.state
    return GraphSettings(
        tenant_id=state.tenant_id,
        client_id=state.client_id,
        client_secret=SecretStr(state.client_secret),
        base_url=simulator.base_url,
        authority_host=simulator.authority,
        ca_bundle=str(simulator.ca_file),
    )


def inbox_row(connector_id: str, key: str) -> dict[str, Any]:
    return {
        "dedupe_key": key, "connector_id": connector_id, "subscription_id": "s1",
        "stream": "users", "kind": CHANGE, "resource": f"users/{key}",
        "received_at": datetime.now(UTC), "handled_at": None,
    }  # fmt: skip


async def accepted(url: str) -> dict[str, str]:
    """What the lookup index accepts (address -> primary), loaded as `roster serve` loads it."""
    reader = create_engine(url, read_only=True)
    try:
        index = LookupIndex()
        await IndexSync(index, reader).load()
    finally:
        await reader.dispose()
    return {
        f"{local}@{domain}": entry.primary
        for domain, table in index.tables.items()
        for local, entry in table.items()
    }


async def test_a_round_the_webhook_inbox_and_an_api_write_all_finish_behind_a_slow_transaction(
    sqlite_url: str,
    queue: WriterQueue,
    simulator: RunningSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(database_url=sqlite_url, index_poll_interval=0.05, _env_file=None)  # type: ignore[call-arg]
    asgi = create_asgi(settings)
    fastapi_app = asgi.app.app
    sessionmaker = fastapi_app.state.sessionmaker
    async with (
        fastapi_app.router.lifespan_context(fastapi_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://roster.test"
        ) as client,
    ):
        key = await api_key(asgi, "write")
        await api_domain(client, key, "fabrikam.example")
        async with sessionmaker.begin() as session:
            connector = await make_connector(session, SourceKind.GRAPH, name="graph", ready=False)
            session.add(WebhookInbox(**inbox_row(connector.id, "before")))
        connector_id = connector.id

        # Held until the round, the inbox writer, the drainer and the API request all wait for
        # their turn, then 3 busy timeouts longer: racing for the file lock would fail them.
        written = asyncio.Event()
        holder = asyncio.create_task(
            hold_a_write(
                sessionmaker,
                "slow.example",
                written=written,
                release=lambda: queue.waiting >= 4,
                linger=3 * BUSY,
            )
        )
        await written.wait()
        retries: list[float] = []

        async def record(delay: float) -> None:
            retries.append(delay)

        source = GraphSource(graph_settings(simulator))
        inbox = InboxWriter(sessionmaker)
        try:
            report, _, asked, learned, _ = await asyncio.gather(
                run_cycle(sessionmaker, connector_id, source, options=RunnerOptions(sleep=record)),
                inbox.store([inbox_row(connector_id, "during")]),
                InboxDrainer(sessionmaker, {}).drain_once(),
                client.post(
                    "/v1/learned", json={"address": "scanner@fabrikam.example"}, headers=auth(key)
                ),
                holder,
            )
        finally:
            await inbox.close()
            await source.aclose()

        assert report.ok, report.error
        assert retries == []  # nothing failed and was retried
        assert learned.status_code == 200, learned.text
        assert asked == 1
        verdict = await client.get("/v1/recipients/scanner@fabrikam.example", headers=auth(key))
        assert verdict.json()["verdict"] == "accept"
        async with sessionmaker() as session:
            keys = set(await session.scalars(select(WebhookInbox.dedupe_key)))
            row = await session.get(Connector, connector_id)
        assert keys == {"before", "during"}
        assert row is not None and row.sync_requested_at is not None
        assert row.state == "ready" and row.last_error is None
        assert {"slow.example", "fabrikam.example"} <= await domains(sessionmaker)
    mirrored = {a: p for a, p in (await accepted(sqlite_url)).items() if "fabrikam" not in a}
    assert mirrored == simulator.state.expected_accepted()
    assert "database is locked" not in caplog.text
    engine = create_engine(sqlite_url)
    await empty_tables(engine)
    await engine.dispose()


async def test_lookup_reads_go_on_while_a_writer_holds_its_turn(
    sqlite_url: str, writers: async_sessionmaker[AsyncSession], queue: WriterQueue
) -> None:
    async with writers.begin() as session:
        await make_domain(session, "committed.example")
    written, reads_done = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(
        hold_a_write(writers, "open.example", written=written, release=reads_done.is_set)
    )
    await written.wait()
    reader = create_engine(sqlite_url, read_only=True)
    try:
        await asyncio.wait_for(IndexSync(LookupIndex(), reader).load(), 60)
        async with reader.connect() as conn:
            seen = set((await asyncio.wait_for(conn.scalars(select(Domain.name)), 60)).all())
        assert queue.held  # the writer still has its turn: the reads did not wait for it
        assert seen == {"committed.example"}  # the open transaction is not visible
        reads_done.set()
        await holder
    finally:
        await reader.dispose()
    assert {"committed.example", "open.example"} <= await domains(writers)


# ---- the turn always comes back


async def test_a_transaction_that_raises_gives_the_turn_back(
    writers: async_sessionmaker[AsyncSession], queue: WriterQueue
) -> None:
    async def write_then_fail() -> None:
        async with writers.begin() as session:
            await make_domain(session, "lost.example")
            await session.flush()
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await write_then_fail()
    assert not queue.held
    async with writers.begin() as session:
        await make_domain(session, "kept.example")
    assert await domains(writers) == {"kept.example"}


async def test_a_failing_statement_gives_the_turn_back(
    writers: async_sessionmaker[AsyncSession], queue: WriterQueue
) -> None:
    async with writers.begin() as session:
        await make_domain(session, "one.example")

    async def add_it_again() -> None:
        async with writers.begin() as session:
            session.add(Domain(name="one.example", tenant_id=await tenant_of(session)))
            await session.flush()

    with pytest.raises(IntegrityError):
        await add_it_again()
    assert not queue.held
    async with writers.begin() as session:
        await make_domain(session, "two.example")
    assert await domains(writers) == {"one.example", "two.example"}


async def tenant_of(session: AsyncSession) -> Any:
    return await session.scalar(select(Domain.tenant_id).limit(1))


async def test_a_cancelled_writer_gives_the_turn_back(
    writers: async_sessionmaker[AsyncSession], queue: WriterQueue
) -> None:
    written = asyncio.Event()
    holder = asyncio.create_task(
        hold_a_write(writers, "cancelled.example", written=written, release=lambda: False)
    )
    await written.wait()
    # A second writer waits in the queue and is cancelled there: it must not take the turn.
    waiting = asyncio.create_task(add_domain_soon(writers, "never.example"))
    await wait_until(lambda: queue.waiting == 1, "the second writer queued")
    waiting.cancel()
    holder.cancel()
    for task in (waiting, holder):
        with pytest.raises(asyncio.CancelledError):
            await task
    await wait_until(lambda: not queue.held, "the turn came back")
    await asyncio.wait_for(add_domain_soon(writers, "after.example"), 60)
    assert await domains(writers) == {"after.example"}


async def add_domain_soon(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, name)


async def test_an_invalidated_connection_gives_the_turn_back(
    sqlite_url: str, writers: async_sessionmaker[AsyncSession], queue: WriterQueue
) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.connect() as conn:
            await conn.begin()
            await conn.execute(select(func.count()).select_from(Domain))
            assert queue.held
            await conn.invalidate()
        assert not queue.held
        await asyncio.wait_for(add_domain_soon(writers, "after.example"), 60)
    finally:
        await engine.dispose()
    assert await domains(writers) == {"after.example"}


async def test_a_second_write_transaction_in_the_same_task_fails_at_once_instead_of_hanging(
    writers: async_sessionmaker[AsyncSession], queue: WriterQueue
) -> None:
    async with writers.begin() as outer:
        await make_domain(outer, "outer.example")
        await outer.flush()
        with pytest.raises(OperationalError, match="nested write transaction") as nested:
            async with asyncio.timeout(60):  # unlike wait_for, stays in this task
                await add_domain_soon(writers, "inner.example")
        assert not is_database_busy(nested.value)  # a bug to fix, not a moment to wait
    assert not queue.held
    assert await domains(writers) == {"outer.example"}


async def test_a_writer_stuck_in_the_queue_gives_up_as_a_locked_database(
    writers: async_sessionmaker[AsyncSession], queue: WriterQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_writer, "QUEUE_TIMEOUT", 1.0)
    written, give_up_seen = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(
        hold_a_write(writers, "stuck.example", written=written, release=give_up_seen.is_set)
    )
    await written.wait()
    with pytest.raises(OperationalError, match="no turn to write") as stuck:
        await add_domain_soon(writers, "waited.example")
    assert is_database_busy(stuck.value)  # retried like any busy database
    give_up_seen.set()
    await holder
    await add_domain_soon(writers, "later.example")
    assert await domains(writers) == {"stuck.example", "later.example"}

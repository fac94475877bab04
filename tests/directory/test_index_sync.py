"""The index follows the change log: at once in the writing process, quickly in others."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_engine
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex
from app.directory.records import SourceKind
from app.directory.verdicts import Reason, Verdict
from tests.factories import make_connector, make_domain, make_recipient


async def test_a_commit_in_another_process_reaches_the_index_within_a_second(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
        manual = await make_connector(session, SourceKind.MANUAL)
    reader = create_engine(database_url, read_only=True)  # a separate pool: another "process"
    index = LookupIndex()
    sync = IndexSync(index, reader, poll_interval=0.05)
    await sync.load()
    poller = asyncio.create_task(sync.run())
    try:
        assert index.lookup("new@contoso.com").verdict is Verdict.REJECT
        async with sessionmaker.begin() as session:
            await make_recipient(session, manual, external_id="m1", addresses=["new@contoso.com"])
        loop = asyncio.get_running_loop()
        started = loop.time()
        while index.lookup("new@contoso.com").verdict is not Verdict.ACCEPT:
            assert loop.time() - started < 1.0, "change not visible within 1 s"
            await asyncio.sleep(0.01)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller  # a poller still mid-query would deadlock the teardown's TRUNCATE
        await reader.dispose()


async def test_refresh_removes_deleted_and_moved_addresses(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    from app.directory import service
    from app.directory.records import ChangeSet

    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
        graph = await make_connector(session, SourceKind.GRAPH)
        await make_recipient(
            session, graph, external_id="g1", addresses=["a@contoso.com", "b@contoso.com"]
        )
    index = LookupIndex()
    sync = IndexSync(index, engine)
    await sync.load()
    assert index.lookup("b@contoso.com").verdict is Verdict.ACCEPT
    async with sessionmaker.begin() as session:
        await make_recipient(session, graph, external_id="g1", addresses=["a@contoso.com"])
        await make_recipient(session, graph, external_id="g2", addresses=["b@contoso.com"])
    await sync.refresh()
    assert index.lookup("b@contoso.com").recipient_id != index.lookup("a@contoso.com").recipient_id
    async with sessionmaker.begin() as session:
        await service.apply(
            session, ChangeSet(deletes=["g2"]), connector=service.ConnectorRef.of(graph)
        )
    await sync.refresh()
    assert index.lookup("b@contoso.com").reason is Reason.UNKNOWN_RECIPIENT


async def test_a_new_accepted_domain_makes_existing_addresses_count(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
        graph = await make_connector(session, SourceKind.GRAPH)
        await make_recipient(
            session, graph, external_id="g1", addresses=["a@contoso.com", "a@fabrikam.com"]
        )
    index = LookupIndex()
    sync = IndexSync(index, engine)
    await sync.load()
    assert index.lookup("a@fabrikam.com").reason is Reason.DOMAIN_NOT_ACCEPTED
    async with sessionmaker.begin() as session:
        await make_domain(session, "fabrikam.com")
    await sync.refresh()
    assert index.lookup("a@fabrikam.com").verdict is Verdict.ACCEPT


async def test_readiness_and_staleness_follow_the_authoritative_connector(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
        graph = await make_connector(session, SourceKind.GRAPH, ready=False)
    index = LookupIndex()
    sync = IndexSync(index, engine, max_staleness=timedelta(hours=1))
    await sync.load()
    assert index.lookup("x@contoso.com").reason is Reason.NOT_READY
    async with sessionmaker.begin() as session:
        connector = await session.get(type(graph), graph.id)
        assert connector is not None
        connector.first_round_done = True
        connector.last_success_at = datetime.now(UTC) - timedelta(hours=2)
    await sync.refresh()
    assert index.lookup("x@contoso.com").reason is Reason.STALE
    async with sessionmaker.begin() as session:
        connector = await session.get(type(graph), graph.id)
        assert connector is not None
        connector.last_success_at = datetime.now(UTC)
    await sync.refresh()
    assert index.lookup("x@contoso.com").reason is Reason.UNKNOWN_RECIPIENT


async def test_unreadable_database_turns_lookups_into_tempfail(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: object
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
        manual = await make_connector(session, SourceKind.MANUAL)
        await make_recipient(session, manual, external_id="m1", addresses=["a@contoso.com"])
    index = LookupIndex()
    if database_url.startswith("sqlite"):
        broken_url = f"sqlite+aiosqlite:///{os.path.join(str(tmp_path), 'missing', 'x.db')}"
    else:
        broken_url = database_url.replace("127.0.0.1:5432", "127.0.0.1:1")
    good = create_engine(database_url, read_only=True)
    sync = IndexSync(index, good)
    await sync.load()
    assert index.lookup("nobody@contoso.com").verdict is Verdict.REJECT
    await good.dispose()
    sync.engine = create_engine(broken_url, read_only=True)
    try:
        await sync.refresh()
    except Exception:  # noqa: S110 - the refresh is expected to fail here
        pass
    else:
        raise AssertionError("refresh against a missing database should fail")
    for address in ("nobody@contoso.com", "a@contoso.com"):
        result = index.lookup(address)
        assert (result.verdict, result.reason) == (Verdict.TEMPFAIL, Reason.UNAVAILABLE)
    await sync.engine.dispose()
    sync.engine = create_engine(database_url, read_only=True)
    await sync.refresh()
    assert index.lookup("nobody@contoso.com").verdict is Verdict.REJECT
    await sync.engine.dispose()

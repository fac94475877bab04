"""Run history and pausing through the runner and the worker, with a scripted source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import runs, status, worker
from app.connectors.base import Page, SourceKind
from app.connectors.runner import ConnectorPaused, RunnerOptions, run_cycle
from app.connectors.runs import Trigger
from app.connectors.worker import ConnectorWorker, request_sync
from app.directory.models import Connector
from app.directory.records import ChangeSet
from tests.connectors.test_runner import ScriptedSource, user
from tests.factories import make_connector

WAIT = 30.0  # generous bound for polls on a busy machine


async def no_sleep(delay: float) -> None:
    return None


@pytest.fixture
async def connector_id(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, ready=False)
        return connector.id


async def history(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        return await runs.newest(session, connector_id, limit=runs.KEEP)


async def until(check: Any, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def set_paused(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str, paused: bool
) -> None:
    async with sessionmaker.begin() as session:
        row = await session.get(Connector, connector_id)
        assert row is not None
        await status.set_paused(session, row, paused)


class StallingSource:
    """One page, then waits for ever: a round to stop in the middle."""

    kind = SourceKind.GRAPH
    streams = ("users",)

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        yield Page(ChangeSet(upserts=[user("u1"), user("u2")]), {"page": 1}, final=False)
        await asyncio.Event().wait()
        yield Page(ChangeSet(), {"delta": True}, final=True)  # never reached


async def test_a_stopped_round_is_recorded_as_an_interrupted_error(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    task = asyncio.create_task(run_cycle(sessionmaker, connector_id, StallingSource()))

    async def first_page_written() -> bool:
        rows = await history(sessionmaker, connector_id)
        async with sessionmaker() as session:
            row = await session.get(Connector, connector_id)
        return bool(rows) and row is not None and row.progress.get("pages") == 1

    await until(first_page_written, "the first page")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (run,) = await history(sessionmaker, connector_id)
    assert (run["outcome"], run["error"]) == ("error", "interrupted")
    assert (run["pages"], run["objects"], run["added"]) == (1, 2, 2)
    assert run["finished_at"] is not None


async def test_history_keeps_the_newest_rows_of_each_connector(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runs, "KEEP", 3)
    source = ScriptedSource([user("u1")])
    for _ in range(5):
        report = await run_cycle(
            sessionmaker, connector_id, source, options=RunnerOptions(sleep=no_sleep)
        )
        assert report.ok
    kept = await history(sessionmaker, connector_id)
    assert len(kept) == 3
    assert [r["id"] for r in kept] == sorted((r["id"] for r in kept), reverse=True)
    assert [r["round"] for r in kept] == ["incremental", "incremental", "incremental"]


async def test_a_paused_connector_runs_no_round_even_when_asked_directly(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    await set_paused(sessionmaker, connector_id, True)
    source = ScriptedSource([user("u1")])
    with pytest.raises(ConnectorPaused, match="paused"):
        await run_cycle(sessionmaker, connector_id, source)
    assert source.requests == []
    assert await history(sessionmaker, connector_id) == []


@pytest.fixture
async def running_worker(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> AsyncIterator[tuple[ConnectorWorker, ScriptedSource]]:
    source = ScriptedSource([user("u1"), user("u2"), user("u3")])
    work = ConnectorWorker(
        sessionmaker,
        connector_id,
        source,
        interval=3600,
        options=RunnerOptions(sleep=no_sleep),
    )
    task = asyncio.create_task(work.run())
    yield work, source
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_worker_records_what_started_each_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    running_worker: tuple[ConnectorWorker, ScriptedSource],
) -> None:
    work, _ = running_worker

    async def rounds(count: int) -> list[dict[str, Any]] | None:
        rows = await history(sessionmaker, connector_id)
        done = len(rows) >= count and all(r["outcome"] != "running" for r in rows)
        return rows if done else None

    (first,) = await until(lambda: rounds(1), "the startup round")
    assert (first["trigger"], first["round"], first["outcome"]) == ("startup", "full", "success")
    work.trigger(reason=Trigger.NOTIFICATION)
    second = (await until(lambda: rounds(2), "the notification round"))[0]
    assert (second["trigger"], second["round"]) == ("notification", "incremental")
    async with sessionmaker.begin() as session:  # what POST /v1/connectors/{id}/sync stores
        await request_sync(session, connector_id, full=True)
    third = (await until(lambda: rounds(3), "the requested round"))[0]
    assert (third["trigger"], third["round"]) == ("manual", "full")


async def test_a_paused_worker_idles_and_resumes_within_seconds(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker, "PAUSE_POLL", 0.05)
    source = ScriptedSource([user("u1")])
    work = ConnectorWorker(
        sessionmaker, connector_id, source, interval=0.05, options=RunnerOptions(sleep=no_sleep)
    )
    task = asyncio.create_task(work.run())
    try:

        async def some_rounds() -> bool:
            return len(await history(sessionmaker, connector_id)) >= 2

        await until(some_rounds, "scheduled rounds")
        await set_paused(sessionmaker, connector_id, True)

        async def noticed() -> bool:
            return work.paused

        # Seen before a round, by the worker that runs them: no round is under way now.
        await until(noticed, "the worker to see the pause")
        before = await history(sessionmaker, connector_id)
        cycles = work.cycles
        work.trigger(reason=Trigger.NOTIFICATION)
        async with sessionmaker.begin() as session:
            await request_sync(session, connector_id, full=False)
        # With a 0.05 s schedule an unpaused worker runs about 20 rounds in this second.
        await asyncio.sleep(1.0)
        assert await history(sessionmaker, connector_id) == before
        assert work.cycles == cycles

        await set_paused(sessionmaker, connector_id, False)

        async def resumed() -> list[dict[str, Any]] | None:
            rows = await history(sessionmaker, connector_id)
            return rows if len(rows) > len(before) else None

        newest = (await until(resumed, "a round after resume"))[0]
        # The missed scheduled round (a request made while paused may still be pending).
        assert newest["trigger"] in ("schedule", "manual")
        assert not work.paused
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

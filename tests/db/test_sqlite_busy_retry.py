"""A round that meets a SQLite database locked by another process is tried again in seconds.

The other process is real: a Python subprocess holding BEGIN IMMEDIATE on the same file (what
`roster sync` or `roster import` next to `roster serve` does), longer than the deliberately
short busy timeout of these tests.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.base import ChangeSet, Page, RecipientKind, RecipientRecord, SourceKind
from app.connectors.runner import RunnerOptions, run_cycle
from app.connectors.worker import ConnectorWorker
from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade
from app.db.sqlite_writer import DATABASE_BUSY_RETRY, is_database_busy
from app.directory.models import Connector, Recipient
from tests.conftest import empty_tables
from tests.factories import make_connector

BUSY = 0.5  # seconds of busy timeout

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("released", flush=True)
"""


class OtherProcess:
    """A process that holds the database's write lock until told to let go."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.proc: asyncio.subprocess.Process | None = None

    async def lock(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOCKER, self.path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert await self._line() == "locked"

    async def release(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        await self.proc.stdin.drain()
        assert await self._line() == "released"
        await self.proc.wait()
        self.proc = None

    async def _line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode().strip()

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("busy") / "roster.db"
    url = f"sqlite+aiosqlite:///{path}?timeout={BUSY}"
    upgrade(url)
    return url


@pytest.fixture
async def writers(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(sqlite_url)
    yield create_sessionmaker(engine)
    await empty_tables(engine)
    await engine.dispose()


@pytest.fixture
async def other(sqlite_url: str) -> AsyncIterator[OtherProcess]:
    path = make_url(sqlite_url).database
    assert path is not None
    process = OtherProcess(str(Path(path)))
    yield process
    await process.stop()


async def connector(writers: async_sessionmaker[AsyncSession]) -> str:
    async with writers.begin() as session:
        return (await make_connector(session, SourceKind.GRAPH, ready=False)).id


class OnePage:
    """One final page of two users; locks the database from another process before the first
    time it yields, so the runner's page transaction meets a locked database."""

    kind = SourceKind.GRAPH
    streams: tuple[str, ...] = ("users",)

    def __init__(self, other: OtherProcess) -> None:
        self.other = other
        self.rounds = 0

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        self.rounds += 1
        if self.rounds == 1:
            await self.other.lock()
        users = [
            RecipientRecord(f"u{n}", RecipientKind.USER, (f"u{n}@contoso.com",)) for n in (1, 2)
        ]
        yield Page(ChangeSet(upserts=users), {"link": "delta-1"}, final=True)


async def test_a_round_that_meets_a_locked_database_is_retried_within_seconds(
    writers: async_sessionmaker[AsyncSession], other: OtherProcess
) -> None:
    connector_id = await connector(writers)
    source = OnePage(other)
    delays: list[float] = []

    async def sleep(delay: float) -> None:  # the other process finishes while we wait
        delays.append(delay)
        await other.release()

    report = await run_cycle(writers, connector_id, source, options=RunnerOptions(sleep=sleep))
    assert report.ok, report.error
    assert len(delays) == 1 and delays[0] <= 2.0  # the first retry, not a long backoff
    assert source.rounds == 2  # resumed from the stored resume point
    async with writers() as session:
        ids = set(await session.scalars(select(Recipient.external_id)))
    assert ids == {"u1", "u2"}


class RecordingWorker(ConnectorWorker):
    """Records the delay it chooses before each cycle instead of waiting it out."""

    def __init__(self, *args: Any, other: OtherProcess, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.other = other
        self.delays: list[float] = []
        self.done = asyncio.Event()

    async def _wait(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) == 2:  # after the failed cycle: the other process finishes
            await self.other.release()
        if len(self.delays) == 3:  # after the good cycle
            self.done.set()
            await asyncio.Event().wait()


async def test_a_cycle_that_cannot_claim_a_locked_database_runs_again_within_seconds(
    writers: async_sessionmaker[AsyncSession], other: OtherProcess
) -> None:
    connector_id = await connector(writers)
    source = OnePage(other)
    source.rounds = 1  # the database is locked from the start instead
    await other.lock()
    worker = RecordingWorker(writers, connector_id, source, interval=3600, other=other)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.done.wait(), 120)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert worker.delays == [0.0, DATABASE_BUSY_RETRY, 3600]
    assert DATABASE_BUSY_RETRY <= 5
    async with writers() as session:
        row = await session.get(Connector, connector_id)
    assert row is not None and row.last_success_at is not None and row.last_error is None


async def test_only_a_busy_database_counts_as_busy(
    writers: async_sessionmaker[AsyncSession], other: OtherProcess
) -> None:
    await other.lock()
    with pytest.raises(OperationalError) as locked:
        async with writers.begin() as session:
            await session.execute(select(Recipient.id))
    await other.release()
    assert is_database_busy(locked.value)
    with pytest.raises(OperationalError) as broken:  # "no such table": no retry cures it
        async with writers() as session:
            await session.execute(text("SELECT * FROM no_such_table"))
    assert not is_database_busy(broken.value)
    assert not is_database_busy(ValueError("database is locked"))

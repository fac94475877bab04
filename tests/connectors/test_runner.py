"""The runner's guarantees, driven by a scripted in-memory source (the real sources have their
own tests against the Graph simulator and a real Samba DC)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import guard, leases, status
from app.connectors.base import Page, SourceKind
from app.connectors.runner import ConnectorBusy, RunnerOptions, approve_deletions, run_cycle
from app.directory.models import Address, Connector, Domain, Recipient
from app.directory.records import ChangeSet, RecipientKind, RecipientRecord
from app.errors import SyncStateLost, TemporarySourceError
from tests.factories import make_connector


def user(ext: str, *addresses: str) -> RecipientRecord:
    return RecipientRecord(ext, RecipientKind.USER, addresses or (f"{ext}@contoso.com",))


class ScriptedSource:
    """Serves a directory as pages of two objects; the cursor is the page number."""

    kind = SourceKind.GRAPH
    streams = ("users",)

    def __init__(self, objects: list[RecipientRecord]) -> None:
        self.objects = objects
        self.deleted: list[str] = []
        self.fail_at_page: int | None = None
        self.fail_with: Exception = RuntimeError("directory went away")
        self.lose_state = False
        self.requests: list[dict[str, Any] | None] = []
        self.domains: list[str] | None = ["contoso.com"]

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        self.requests.append(cursor)
        if cursor is not None and cursor.get("delta") and self.lose_state:
            self.lose_state = False
            raise SyncStateLost("token expired")
        if cursor is not None and cursor.get("delta"):
            deleted, self.deleted = self.deleted, []
            yield Page(ChangeSet(deletes=deleted), {"delta": True}, final=True)
            return
        start = cursor["page"] if cursor else 0
        chunks = [self.objects[i : i + 2] for i in range(0, len(self.objects), 2)] or [[]]
        for number in range(start, len(chunks)):
            if self.fail_at_page == number:
                self.fail_at_page = None
                raise self.fail_with
            final = number == len(chunks) - 1
            yield Page(
                ChangeSet(upserts=list(chunks[number])),
                {"delta": True} if final else {"page": number + 1},
                final=final,
                domains=self.domains if final else None,
            )


@pytest.fixture
async def connector_id(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, ready=False)
        return connector.id


async def live_addresses(sessionmaker: async_sessionmaker[AsyncSession]) -> set[str]:
    async with sessionmaker() as session:
        return set(await session.scalars(select(Address.address)))


async def connector(sessionmaker: async_sessionmaker[AsyncSession], cid: str) -> Connector:
    async with sessionmaker() as session:
        row = await session.get(Connector, cid)
        assert row is not None
        return row


def no_sleep() -> RunnerOptions:
    async def sleep(_: float) -> None:
        return None

    return RunnerOptions(sleep=sleep, guard=guard.GuardSettings(threshold=3))


async def test_full_round_mirrors_the_source_and_marks_the_connector_ready(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(5)])
    report = await run_cycle(sessionmaker, connector_id, source, options=no_sleep())
    assert report.ok, report.error
    assert await live_addresses(sessionmaker) == {f"u{i}@contoso.com" for i in range(5)}
    row = await connector(sessionmaker, connector_id)
    assert (row.state, row.first_round_done, row.last_error) == ("ready", True, None)
    assert row.last_success_at is not None
    async with sessionmaker() as session:
        assert set(await session.scalars(select(Domain.name))) == {"contoso.com"}


async def test_a_round_that_fails_between_pages_resumes_without_loss(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(6)])
    source.fail_at_page = 2
    report = await run_cycle(sessionmaker, connector_id, source, options=no_sleep())
    assert not report.ok and "directory went away" in (report.error or "")
    row = await connector(sessionmaker, connector_id)
    assert (row.state, row.first_round_done) == ("error", False)
    # Pages 0 and 1 are committed; nothing was swept or lost.
    assert await live_addresses(sessionmaker) == {f"u{i}@contoso.com" for i in range(4)}
    report = await run_cycle(sessionmaker, connector_id, source, options=no_sleep())
    assert report.ok
    assert source.requests[-1] == {"page": 2}  # resumed from the stored cursor
    assert await live_addresses(sessionmaker) == {f"u{i}@contoso.com" for i in range(6)}


async def test_temporary_errors_are_retried_from_the_cursor(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(4)])
    source.fail_at_page = 1
    source.fail_with = TemporarySourceError("429", delay=2)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    report = await run_cycle(sessionmaker, connector_id, source, options=RunnerOptions(sleep=sleep))
    assert report.ok and delays == [2]
    assert source.requests == [None, {"page": 1}]


async def test_full_round_sweeps_what_it_did_not_see_after_the_final_page(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(4)])
    assert (await run_cycle(sessionmaker, connector_id, source, options=no_sleep())).ok
    source.objects = source.objects[:3]
    source.lose_state = True  # next delta fails: a full round must converge by sweeping
    assert (await run_cycle(sessionmaker, connector_id, source, options=no_sleep())).ok
    assert await live_addresses(sessionmaker) == {f"u{i}@contoso.com" for i in range(3)}


async def test_a_vanishing_directory_mid_round_sweeps_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(4)])
    assert (await run_cycle(sessionmaker, connector_id, source, options=no_sleep())).ok
    source.objects = []
    source.fail_at_page = 0
    assert not (
        await run_cycle(sessionmaker, connector_id, source, full=True, options=no_sleep())
    ).ok
    assert len(await live_addresses(sessionmaker)) == 4


async def test_mass_deletion_is_held_until_approved(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(6)])
    assert (await run_cycle(sessionmaker, connector_id, source, options=no_sleep())).ok
    source.deleted = [f"u{i}" for i in range(5)]  # 5 > threshold 3
    report = await run_cycle(sessionmaker, connector_id, source, options=no_sleep())
    assert report.ok and report.held_deletions
    assert (await connector(sessionmaker, connector_id)).state == "needs_approval"
    assert len(await live_addresses(sessionmaker)) == 6  # still accepted while held
    assert await approve_deletions(sessionmaker, connector_id) == 5
    assert await live_addresses(sessionmaker) == {"u5@contoso.com"}
    assert (await connector(sessionmaker, connector_id)).state == "ready"


async def test_small_deletions_apply_at_the_end_of_the_round(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(4)])
    assert (await run_cycle(sessionmaker, connector_id, source, options=no_sleep())).ok
    source.deleted = ["u0", "u1"]
    assert (await run_cycle(sessionmaker, connector_id, source, options=no_sleep())).ok
    assert await live_addresses(sessionmaker) == {"u2@contoso.com", "u3@contoso.com"}
    async with sessionmaker() as session:
        deleted = await session.scalars(
            select(Recipient.external_id).where(Recipient.deleted_at.is_not(None))
        )
        assert set(deleted) == {"u0", "u1"}


async def test_a_second_runner_cannot_take_a_held_lease(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    async with sessionmaker.begin() as session:
        assert await leases.claim(session, connector_id, "other", now=datetime.now(UTC))
    with pytest.raises(ConnectorBusy, match="other"):
        await run_cycle(sessionmaker, connector_id, ScriptedSource([]), options=no_sleep())


@pytest.fixture
def live_process() -> Iterator[int]:
    """The pid of a process of this host that is alive (not this one)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def gone_process() -> int:
    """The pid of a process of this host that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def hold_lease(sessionmaker: async_sessionmaker[AsyncSession], cid: str, owner: str) -> None:
    """The row as a round of `owner` leaves it while running (or when killed)."""
    async with sessionmaker.begin() as session:
        assert await leases.claim(session, cid, owner, now=datetime.now(UTC))
        row = await session.get(Connector, cid)
        assert row is not None
        row.progress = {"running": True, "stream": "users", "pages": 3}


async def test_a_lease_left_by_a_process_that_is_gone_is_taken_over_at_once(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str, gone_process: int
) -> None:
    owner = f"{socket.gethostname()}:{gone_process}:0123abcd"
    await hold_lease(sessionmaker, connector_id, owner)
    async with sessionmaker() as session:  # what status shows before anyone takes over
        (shown,) = await status.list_status(session)
    assert (shown["progress"]["running"], shown["progress"]["interrupted"]) == (False, True)
    source = ScriptedSource([user(f"u{i}") for i in range(3)])
    report = await run_cycle(sessionmaker, connector_id, source, options=no_sleep())
    assert report.ok and report.taken_over_from == owner
    row = await connector(sessionmaker, connector_id)
    assert (row.lease_owner, row.progress["running"]) == (None, False)
    assert await live_addresses(sessionmaker) == {f"u{i}@contoso.com" for i in range(3)}


@pytest.mark.parametrize("where", ["this host", "another host"])
async def test_a_lease_held_by_a_live_process_or_another_host_is_not_taken(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    live_process: int,
    gone_process: int,
    where: str,
) -> None:
    # Another host's pid cannot be checked: even one that is gone here counts as alive.
    host, pid = (
        (socket.gethostname(), live_process)
        if where == "this host"
        else ("elsewhere", gone_process)
    )
    owner = f"{host}:{pid}:0123abcd"
    await hold_lease(sessionmaker, connector_id, owner)
    with pytest.raises(ConnectorBusy) as busy:
        await run_cycle(sessionmaker, connector_id, ScriptedSource([]), options=no_sleep())
    assert busy.value.holder == owner and busy.value.until is not None
    assert busy.value.until > datetime.now(UTC)
    async with sessionmaker() as session:
        (shown,) = await status.list_status(session)
    assert shown["progress"]["running"] is True


async def test_a_stopped_round_keeps_its_pages_records_interrupted_and_frees_the_lease(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = SlowLastPage([user(f"u{i}") for i in range(6)])
    cycle = asyncio.create_task(run_cycle(sessionmaker, connector_id, source, options=no_sleep()))
    await asyncio.wait_for(source.asked_for_last_page.wait(), 30)
    first_pages = {f"u{i}@contoso.com" for i in range(4)}
    for _ in range(200):  # the two pages before the slow one commit
        if await live_addresses(sessionmaker) == first_pages:
            break
        await asyncio.sleep(0.05)
    cycle.cancel()  # what SIGTERM does to `roster sync`, and shutdown to `roster serve`
    with pytest.raises(asyncio.CancelledError):
        await cycle
    row = await connector(sessionmaker, connector_id)
    assert (row.lease_owner, row.lease_expires_at) == (None, None)
    assert row.progress["running"] is False and row.progress["interrupted"] is True
    assert (row.progress["stream"], row.progress["pages"]) == ("users", 2)
    assert row.state != "error" and row.last_error is None  # a stop is not a failure
    assert await live_addresses(sessionmaker) == first_pages
    source.release.set()
    report = await run_cycle(sessionmaker, connector_id, source, options=no_sleep())
    assert report.ok and report.taken_over_from is None
    assert source.requests[-1] == {"page": 2}  # resumed after the last committed page
    assert len(await live_addresses(sessionmaker)) == 6


async def test_a_stop_while_a_page_is_written_lets_that_page_commit(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    written = asyncio.Event()
    proceed = asyncio.Event()

    async def after_commit() -> None:  # runs inside the page's uninterruptible part
        written.set()
        await proceed.wait()

    source = ScriptedSource([user(f"u{i}") for i in range(6)])
    cycle = asyncio.create_task(
        run_cycle(sessionmaker, connector_id, source, options=no_sleep(), after_commit=after_commit)
    )
    await asyncio.wait_for(written.wait(), 30)
    cycle.cancel()
    await asyncio.sleep(0.1)
    assert not cycle.done()  # waits for the page under way
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(cycle, 30)
    row = await connector(sessionmaker, connector_id)
    assert row.progress["interrupted"] is True and row.lease_owner is None
    pages = row.progress["pages"]
    assert pages >= 1 and len(await live_addresses(sessionmaker)) == 2 * pages


class SlowLastPage(ScriptedSource):
    """The final page waits until the test lets it go, as a directory that answers slowly."""

    def __init__(self, objects: list[RecipientRecord]) -> None:
        super().__init__(objects)
        self.asked_for_last_page = asyncio.Event()
        self.release = asyncio.Event()

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        async for page in super().pages(stream, cursor):
            if page.final:
                self.asked_for_last_page.set()
                await self.release.wait()
            yield page


async def test_a_slow_page_never_holds_the_previous_ones_uncommitted(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = SlowLastPage([user(f"u{i}") for i in range(4)])
    cycle = asyncio.create_task(run_cycle(sessionmaker, connector_id, source, options=no_sleep()))
    try:
        await asyncio.wait_for(source.asked_for_last_page.wait(), 10)
        for _ in range(100):  # page 0 commits while page 1 is on its way
            if await live_addresses(sessionmaker) == {"u0@contoso.com", "u1@contoso.com"}:
                break
            await asyncio.sleep(0.05)
        assert await live_addresses(sessionmaker) == {"u0@contoso.com", "u1@contoso.com"}
        async with sessionmaker.begin() as session:  # and no transaction holds the writer lock
            await make_connector(session, SourceKind.MANUAL, name="meanwhile")
    finally:
        source.release.set()
    assert (await asyncio.wait_for(cycle, 30)).ok
    assert len(await live_addresses(sessionmaker)) == 4


async def test_pages_written_together_are_each_reported_in_order(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> None:
    source = ScriptedSource([user(f"u{i}") for i in range(2 * 40)])  # 40 pages, all waiting
    seen: list[tuple[str, int, int]] = []
    report = await run_cycle(
        sessionmaker,
        connector_id,
        source,
        options=no_sleep(),
        on_page=lambda stream, pages, objects: seen.append((stream, pages, objects)),
    )
    assert report.ok and report.pages == 40
    assert seen == [("users", n, 2 * n) for n in range(1, 41)]
    assert len(await live_addresses(sessionmaker)) == 80

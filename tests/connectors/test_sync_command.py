"""What `roster sync` does with several directories when one is busy (app/sync_command.py), on the
real database with scripted sources; the same command as a real process is tested against the
Graph simulator in graph/test_sync_signals.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from io import StringIO

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import leases
from app.connectors.base import SourceKind
from app.directory.models import Connector
from app.sync_command import Job, Stopper, View, exit_code, report_outcomes, sync_jobs
from tests.connectors.test_runner import ScriptedSource, live_addresses, no_sleep, user
from tests.factories import make_connector

HOLDER = "elsewhere:4242:feedcafe"  # another host: never taken over before the lease expires


def console() -> tuple[Console, StringIO]:
    buffer = StringIO()
    return Console(file=buffer, force_terminal=False, width=300), buffer


async def jobs(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Job]:
    async with sessionmaker.begin() as session:
        busy = await make_connector(session, SourceKind.GRAPH, name="busy", ready=False)
        free = await make_connector(session, SourceKind.LDAP, name="free", ready=False)
        busy_id, free_id = busy.id, free.id
    async with sessionmaker.begin() as session:
        assert await leases.claim(session, busy_id, HOLDER, now=datetime.now(UTC))
    busy_source = ScriptedSource([user("b0"), user("b1"), user("b2")])
    free_source = ScriptedSource([user("f0")])
    free_source.kind = SourceKind.LDAP
    free_source.domains = None
    return [Job("busy", busy_id, busy_source), Job("free", free_id, free_source)]


async def test_no_wait_skips_a_busy_directory_runs_the_others_and_exits_75(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    err, said = console()
    out, printed = console()
    outcomes = await sync_jobs(
        sessionmaker,
        await jobs(sessionmaker),
        full=False,
        no_wait=True,
        options=no_sleep(),
        view=View(Progress(console=err, disable=True), err),
        stopper=Stopper(),
    )
    report_outcomes(outcomes, None, out, err)
    assert exit_code(outcomes, None) == 75
    assert "free: ok, 1 pages, 1 objects" in printed.getvalue()
    assert f"busy: busy: being synced by {HOLDER} until 20" in said.getvalue()
    assert await live_addresses(sessionmaker) == {"f0@contoso.com"}


async def test_a_busy_directory_is_waited_for_saying_who_holds_it_then_synced(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    err, said = console()
    out, printed = console()
    work = await jobs(sessionmaker)
    running = asyncio.create_task(
        sync_jobs(
            sessionmaker,
            work,
            full=False,
            no_wait=False,
            options=no_sleep(),
            view=View(Progress(console=err, disable=True), err),
            stopper=Stopper(),
        )
    )
    for _ in range(600):  # the other directory is synced while this one waits
        if "busy: waiting for the lease held by" in said.getvalue():
            break
        await asyncio.sleep(0.05)
    assert f"busy: waiting for the lease held by {HOLDER} until 20" in said.getvalue()
    assert await live_addresses(sessionmaker) == {"f0@contoso.com"}
    async with sessionmaker.begin() as session:  # the holder finishes its round
        await session.execute(
            update(Connector).where(Connector.id == work[0].connector_id).values(lease_owner=None)
        )
    outcomes = await asyncio.wait_for(running, 60)
    report_outcomes(outcomes, None, out, err)
    assert exit_code(outcomes, None) == 0
    assert "busy: ok, 2 pages, 3 objects" in printed.getvalue()
    assert len(await live_addresses(sessionmaker)) == 4

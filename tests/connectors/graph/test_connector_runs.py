"""The run history of Graph rounds against the simulator: counts, trigger, redacted errors,
and rounds a dead process left `running`; on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import leases, runs
from app.connectors.graph.source import GraphSource
from app.connectors.runner import RunnerOptions, run_cycle
from app.connectors.runs import Trigger
from app.directory.models import Recipient
from app.settings import GraphSettings
from app.simulator.graph import RunningSimulator


async def no_sleep(delay: float) -> None:
    return None


async def history(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        return await runs.newest(session, connector_id, limit=runs.KEEP)


async def live_recipients(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Recipient).where(Recipient.deleted_at.is_(None))
        )
    return int(count or 0)


async def test_a_full_and_an_incremental_round_are_recorded_with_their_counts_and_trigger(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: GraphSource,
    simulator: RunningSimulator,
) -> None:
    options = RunnerOptions(sleep=no_sleep)
    first = await run_cycle(
        sessionmaker, connector_id, source, trigger=Trigger.SCHEDULE, options=options
    )
    assert first.ok, first.error
    (full,) = await history(sessionmaker, connector_id)
    assert full["round"] == "full" and full["trigger"] == "schedule"
    assert full["outcome"] == "success" and full["error"] is None
    assert full["finished_at"] is not None and full["finished_at"] >= full["started_at"]
    assert (full["pages"], full["objects"]) == (first.pages, first.objects)
    assert full["added"] == await live_recipients(sessionmaker) > 0
    assert (full["updated"], full["deleted"], full["held"]) == (0, 0, 0)

    state = simulator.state
    state.add_user(mail="New.Person@contoso.com", displayName="New Person")
    users = [u for u in state.store.live["users"].values() if u.get("mail")]
    state.update(users[0]["id"], displayName="Renamed Person")
    state.delete(users[1]["id"])
    second = await run_cycle(
        sessionmaker, connector_id, source, trigger=Trigger.NOTIFICATION, options=options
    )
    assert second.ok, second.error
    incremental, previous = await history(sessionmaker, connector_id)
    assert previous == full
    assert incremental["round"] == "incremental" and incremental["trigger"] == "notification"
    assert incremental["outcome"] == "success"
    assert (incremental["added"], incremental["updated"], incremental["deleted"]) == (1, 1, 1)
    assert (incremental["pages"], incremental["objects"]) == (second.pages, second.objects)


async def test_a_round_with_a_wrong_client_secret_records_an_error_without_the_secret(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    graph_settings: GraphSettings,
) -> None:
    wrong = "Wr0ng-s3cret-value-4711"
    bad = GraphSource(graph_settings.model_copy(update={"client_secret": wrong}))
    try:
        report = await run_cycle(
            sessionmaker, connector_id, bad, options=RunnerOptions(sleep=no_sleep)
        )
    finally:
        await bad.aclose()
    assert not report.ok
    (run,) = await history(sessionmaker, connector_id)
    assert run["outcome"] == "error" and run["trigger"] == "manual"
    assert run["error"] and "PermanentSourceError" in run["error"]
    assert run["finished_at"] is not None
    async with sessionmaker() as session:  # every column of the stored row, as text
        rows = (await session.execute(text("SELECT * FROM connector_runs"))).all()
    assert rows and wrong not in repr(rows)


@pytest.fixture
def gone_process() -> int:
    """The pid of a process of this host that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_a_round_left_running_by_a_dead_process_is_closed_as_interrupted(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: GraphSource,
    gone_process: int,
) -> None:
    dead = f"{socket.gethostname()}:{gone_process}:0123abcd"
    assert leases.is_gone(dead)
    started = datetime.now(UTC) - timedelta(seconds=30)
    async with sessionmaker.begin() as session:  # what the killed round left behind
        assert await leases.claim(session, connector_id, dead, now=datetime.now(UTC))
        await runs.start(session, connector_id, full=True, trigger=Trigger.SCHEDULE, now=started)
    (left,) = await history(sessionmaker, connector_id)
    assert left["outcome"] == "running" and left["finished_at"] is None

    report = await run_cycle(sessionmaker, connector_id, source, options=RunnerOptions())
    assert report.ok and report.taken_over_from == dead
    new, old = await history(sessionmaker, connector_id)
    assert (old["id"], old["outcome"], old["error"]) == (left["id"], "error", "interrupted")
    assert old["finished_at"] is not None and old["finished_at"] >= old["started_at"]
    assert new["outcome"] == "success" and new["trigger"] == "manual"

"""`roster sync` and `roster serve` as real processes, stopped by real signals mid-round.

The simulator holds its answer to one chosen delta page (`PageGate`), so the signal lands
while the process waits for that page with every page before it committed: a stop "at a page
in the middle" of a users or a groups round, first (full) or incremental. After SIGKILL the
next run must take the dead process's lease over at once; after SIGTERM the process must exit
by itself with its round recorded as interrupted and its lease released. Either way the re-run
must finish and leave the mirror exactly as the simulator's directory.

Each database runs half of the (round, stream, signal) matrix through `roster sync` and the
other half through `roster serve`; the two databases together cover all eight cases (and stop
`roster sync` gracefully with SIGTERM on one, SIGINT on the other).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.connectors import leases
from app.connectors.base import SourceKind
from app.connectors.status import list_status
from app.connectors.worker import request_sync
from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade
from app.directory.models import Connector
from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec
from tests.connectors.graph.test_graph_source import accepted, expected_memberships, memberships
from tests.factories import make_connector

# Which stream each database stops in the first round and in the incremental round.
PLANS = {"sqlite": ("users", "groups"), "postgresql": ("groups", "users")}
# How each database stops `roster sync` gracefully: SIGTERM, or SIGINT (what Ctrl-C sends).
GRACEFUL = {"sqlite": signal.SIGTERM, "postgresql": signal.SIGINT}
HELD_PAGE = 3  # of the stream's round; every round below has more pages than this
WAIT = 90.0  # generous bound for anything a process should do "promptly" on a loaded machine


@pytest.fixture
def simulator_state() -> SimulatorState:
    """Small pages, so each round of users and groups spans several pages."""
    return SimulatorState.seeded(
        TenantSpec(users=60, groups=12, contacts=5, memberships=200),
        seed=11,
        page_size=5,
        members_page_size=10,
    )


class PageGate:
    """Holds the simulator's answer to one delta page until released; counts pages served."""

    def __init__(self, state: SimulatorState) -> None:
        self.served = 0
        self.holding = threading.Event()
        self._open = threading.Event()
        self._resource: str | None = None
        self._page = 0
        self._seen = 0
        delta = state.delta
        start, resume = delta.start, delta.resume

        def gated_start(resource: str, select: Any, delta_token: str | None) -> Any:
            self._pass(resource)
            return start(resource, select, delta_token)

        def gated_resume(resource: str, skip_token: str) -> Any:
            self._pass(resource)
            return resume(resource, skip_token)

        delta.start = gated_start  # type: ignore[method-assign]
        delta.resume = gated_resume  # type: ignore[method-assign]

    def hold(self, resource: str, page: int = HELD_PAGE) -> None:
        """Hold the `page`-th page of the next round of `resource`; count pages from now."""
        self.served, self._seen, self._page, self._resource = 0, 0, page, resource
        self._open.clear()
        self.holding.clear()

    def release(self) -> None:
        self._resource = None
        self._open.set()

    def _pass(self, resource: str) -> None:
        if resource == self._resource:
            self._seen += 1
            if self._seen == self._page:
                self.holding.set()
                self._open.wait(timeout=2 * WAIT)  # the simulator thread waits here
        self.served += 1


@pytest.fixture
def gate(simulator: RunningSimulator) -> Iterator[PageGate]:
    gate = PageGate(simulator.state)
    yield gate
    gate.release()


def change_the_tenant(state: SimulatorState) -> None:
    """Enough changes that the incremental users and groups rounds span several pages."""
    store = state.store
    users = sorted(store.live["users"])
    groups = sorted(store.live["groups"])
    for n, uid in enumerate(users[:30]):
        mail = store.live["users"][uid].get("mail")
        if mail:
            state.add_alias(uid, f"extra{n}@{mail.rpartition('@')[2]}")
    for uid in users[30:33]:
        state.delete(uid)
    for n in range(4):
        state.add_user(mail=f"newcomer{n}@contoso.com", displayName=f"Newcomer {n}")
    for n, gid in enumerate(groups):
        state.update(gid, displayName=f"Renamed group {n}")
        members = set(store.members.get(gid) or ())
        for uid in users[35 + n : 45 + n]:
            if uid in members:
                state.remove_member(gid, uid)
            else:
                state.add_member(gid, uid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Roster:
    """Runs `roster` commands against the simulator and the test database."""

    def __init__(self, simulator: RunningSimulator, database_url: str, tmp_path: Path) -> None:
        state = simulator.state
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
        self.env = env | {
            "ROSTER_DATABASE_URL": database_url,
            "ROSTER_GRAPH__TENANT_ID": state.tenant_id,
            "ROSTER_GRAPH__CLIENT_ID": state.client_id,
            "ROSTER_GRAPH__CLIENT_SECRET": state.client_secret,
            "ROSTER_GRAPH__BASE_URL": simulator.base_url,
            "ROSTER_GRAPH__AUTHORITY_HOST": simulator.authority,
            "ROSTER_GRAPH__CA_BUNDLE": str(simulator.ca_file),
            "ROSTER_GRAPH__POLL_INTERVAL": "86400",  # rounds only when started or asked
        }
        self.tmp_path = tmp_path
        self.runs = 0
        self.logs: dict[int, Path] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        self.runs += 1
        log = self.tmp_path / f"run-{self.runs}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "app", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.logs[proc.pid] = log
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text()

    def run(self, *args: str) -> tuple[int, str]:
        proc = self.start(*args)
        code = proc.wait(timeout=4 * WAIT)
        return code, self.output(proc)

    def serve(self) -> subprocess.Popen[bytes]:
        return self.start("serve", "--port", str(free_port()))


@pytest.fixture
def roster(simulator: RunningSimulator, database_url: str, tmp_path: Path) -> Iterator[Roster]:
    roster = Roster(simulator, database_url, tmp_path)
    yield roster
    for proc in roster.procs:  # a failed test leaves none running
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until `check()` holds; fail after WAIT seconds, or at once if `proc` exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        assert loop.time() < deadline, f"not within {WAIT:.0f}s: {what}"
        await asyncio.sleep(0.1)


async def graph_row(sessionmaker: async_sessionmaker[AsyncSession]) -> Connector | None:
    async with sessionmaker() as session:
        return await session.scalar(select(Connector).where(Connector.name == "graph"))


async def stopped_mid_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    gate: PageGate,
    stream: str,
    proc: subprocess.Popen[bytes],
) -> None:
    """Wait until `proc` has committed every page served and waits for the held one."""

    async def committed() -> bool:
        if not gate.holding.is_set():
            return False
        row = await graph_row(sessionmaker)
        progress = row.progress if row is not None else {}
        return (
            progress.get("running") is True
            and progress.get("stream") == stream
            and progress.get("pages") == gate.served
        )

    await eventually(committed, f"{stream} pages committed up to the held page", proc)


async def status_of_graph(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """What `roster status --json` and GET /v1/connectors show for the connector."""
    async with sessionmaker() as session:
        (item,) = await list_status(session)
    return item


async def assert_mirror_is_exact(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], state: SimulatorState
) -> None:
    assert await accepted(engine) == state.expected_accepted()
    assert await memberships(sessionmaker) == expected_memberships(state)


async def assert_interrupted_and_released(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    row = await graph_row(sessionmaker)
    assert row is not None
    assert (row.lease_owner, row.lease_expires_at) == (None, None)
    assert row.progress.get("running") is False
    assert row.progress.get("interrupted") is True
    shown = await status_of_graph(sessionmaker)
    assert (shown["progress"]["running"], shown["progress"]["interrupted"]) == (False, True)


async def kill_mid_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    gate: PageGate,
    stream: str,
    proc: subprocess.Popen[bytes],
) -> None:
    """SIGKILL at the held page; status must not go on saying `running`."""
    await stopped_mid_round(sessionmaker, gate, stream, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    row = await graph_row(sessionmaker)
    assert row is not None and row.lease_owner is not None  # a killed process cleans up nothing
    shown = await status_of_graph(sessionmaker)
    assert shown["progress"]["running"] is False
    gate.release()


async def terminate_mid_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    gate: PageGate,
    stream: str,
    proc: subprocess.Popen[bytes],
    sig: signal.Signals = signal.SIGTERM,
) -> int:
    """SIGTERM (or SIGINT) at the held page: the process exits by itself, round interrupted."""
    await stopped_mid_round(sessionmaker, gate, stream, proc)
    proc.send_signal(sig)
    code = proc.wait(timeout=WAIT)
    await assert_interrupted_and_released(sessionmaker)
    gate.release()
    return code


async def test_roster_sync_killed_or_stopped_mid_round_resumes_exactly(
    roster: Roster,
    gate: PageGate,
    simulator: RunningSimulator,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    state = simulator.state
    first, incremental = PLANS[engine.dialect.name]

    # First round, SIGKILL: the next sync takes the dead process's lease at once (--no-wait
    # would exit 75 if it had to wait) and finishes the round where the killed one stopped.
    gate.hold(first)
    killed = roster.start("sync")
    await kill_mid_round(sessionmaker, gate, first, killed)
    code, output = roster.run("sync", "--no-wait")
    assert code == 0, output
    assert "took over the lease of" in output and "graph: ok" in output
    await assert_mirror_is_exact(engine, sessionmaker, state)
    assert (await status_of_graph(sessionmaker))["state"] == "ready"

    # Incremental round, SIGTERM or SIGINT: exits by itself (128 + the signal), lease
    # released, round interrupted.
    change_the_tenant(state)
    gate.hold(incremental)
    stopped = roster.start("sync")
    graceful = GRACEFUL[engine.dialect.name]
    code = await terminate_mid_round(sessionmaker, gate, incremental, stopped, graceful)
    output = roster.output(stopped)
    assert code == 128 + graceful, output
    assert f"interrupted by {graceful.name}" in output
    code, output = roster.run("sync", "--no-wait")
    assert code == 0, output
    assert "took over" not in output and "graph: ok" in output
    await assert_mirror_is_exact(engine, sessionmaker, state)
    assert (await status_of_graph(sessionmaker))["progress"]["running"] is False


async def test_roster_serve_stopped_or_killed_mid_round_resumes_exactly(
    roster: Roster,
    gate: PageGate,
    simulator: RunningSimulator,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    state = simulator.state
    first, incremental = PLANS["postgresql" if engine.dialect.name == "sqlite" else "sqlite"]

    async def round_finished(after: str | None) -> bool:
        row = await graph_row(sessionmaker)
        progress = row.progress if row is not None else {}
        finished = progress.get("finished_at")
        return (
            row is not None
            and row.state == "ready"
            and progress.get("running") is False
            and finished is not None
            and (after is None or finished > after)
        )

    # First round, SIGTERM: serve shuts down by itself with the round interrupted and the
    # lease released; its replacement starts at once and completes the round.
    gate.hold(first)
    server = roster.serve()
    try:
        await terminate_mid_round(sessionmaker, gate, first, server)
    finally:
        server.kill()
    server = roster.serve()
    try:
        await eventually(lambda: round_finished(None), "the restarted serve's round", server)
        await assert_mirror_is_exact(engine, sessionmaker, state)
        row = await graph_row(sessionmaker)
        assert row is not None
        done_at = row.progress["finished_at"]

        # Incremental round (asked for as POST /v1/connectors/{id}/sync does), SIGKILL.
        change_the_tenant(state)
        gate.hold(incremental)
        async with sessionmaker.begin() as session:
            await request_sync(session, row.id, full=False)
        await kill_mid_round(sessionmaker, gate, incremental, server)
    finally:
        server.kill()
    server = roster.serve()
    try:
        await eventually(lambda: round_finished(done_at), "the round after the kill", server)
        assert "lease taken over from a process that is gone" in roster.output(server)
        await assert_mirror_is_exact(engine, sessionmaker, state)
    finally:
        server.terminate()
        server.wait(timeout=WAIT)


async def test_roster_sync_waits_for_a_busy_lease_or_with_no_wait_exits_75(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    # Command-line behaviour, on one engine (the lease on both: test_sync_command.py).
    url = f"sqlite+aiosqlite:///{tmp_path / 'roster.db'}"
    await asyncio.to_thread(upgrade, url)  # alembic runs its own event loop
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    roster = Roster(simulator, url, tmp_path)
    holder = "elsewhere:4242:feedcafe"  # another host: its lease is never taken over early
    try:
        async with sessionmaker.begin() as session:
            row = await make_connector(session, SourceKind.GRAPH, name="graph", ready=False)
            connector_id = row.id
            assert await leases.claim(session, connector_id, holder, now=datetime.now(UTC))

        code, output = roster.run("sync", "--no-wait")
        assert code == 75, output
        assert f"graph: busy: being synced by {holder} until 20" in output

        waiting = roster.start("sync")

        async def says_who_holds_it() -> bool:
            line = f"graph: waiting for the lease held by {holder} until 20"
            return line in roster.output(waiting)

        await eventually(says_who_holds_it, "roster sync saying whom it waits for", waiting)
        async with sessionmaker.begin() as session:  # the holder finishes
            await leases.release(session, connector_id, holder)
        assert waiting.wait(timeout=4 * WAIT) == 0, roster.output(waiting)
        assert "graph: ok" in roster.output(waiting)
        await assert_mirror_is_exact(engine, sessionmaker, simulator.state)
    finally:
        for proc in roster.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=WAIT)
        await engine.dispose()

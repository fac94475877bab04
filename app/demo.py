"""`roster demo`: Roster against the built-in simulated Microsoft 365 tenant, in one process.

Starts the Graph simulator with a seeded tenant, mirrors it into a fresh SQLite file through the
real Graph connector (msgraph-sdk and azure-identity over HTTPS), creates an API key, serves the
HTTP API and prints example lookups with the answers the API really gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from pydantic import SecretStr

from app.connectors.graph.config import GraphSettings
from app.errors import RosterError
from app.settings import Settings
from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec, start_in_thread

logger = logging.getLogger(__name__)

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000  # 0 picks a free port (tests); the banner shows the real one
    database: Path = Path("roster-demo.db")
    seed: int = 42
    users: int = 200
    groups: int = 30
    contacts: int = 20
    poll_interval: float = 60.0  # the simulator's control API changes show up this fast


@dataclass(frozen=True, slots=True)
class Example:
    label: str
    address: str


def run_demo(options: DemoOptions, echo: Echo) -> None:
    """Blocks until Ctrl-C (or SIGTERM); the simulator and the database file stay local."""
    started = time.perf_counter()
    state = SimulatorState.seeded(
        TenantSpec(users=options.users, groups=options.groups, contacts=options.contacts),
        seed=options.seed,
    )
    simulator = start_in_thread(state)
    try:
        settings = _settings(options, simulator)
        _fresh_database(options.database, settings.database_url)
        asyncio.run(_serve(options, settings, simulator, echo, started))
    finally:
        simulator.stop()


def _settings(options: DemoOptions, simulator: RunningSimulator) -> Settings:
    state = simulator.state
    return Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{options.database.resolve()}",
        graph=GraphSettings(
            tenant_id=state.tenant_id,
            client_id=state.client_id,
            client_secret=SecretStr(state.client_secret),
            base_url=simulator.base_url,
            authority_host=simulator.authority,
            ca_bundle=str(simulator.ca_file),
            poll_interval=timedelta(seconds=options.poll_interval),
        ),
    )


def _fresh_database(path: Path, url: str) -> None:
    """The simulator's delta tokens die with it, so every demo starts from an empty mirror."""
    from app.db.migrate import upgrade

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    upgrade(url)


async def _first_sync(settings: Settings) -> tuple[str, str, int, int]:
    """A full round before serving, so the first lookups already have answers."""
    from app.apikeys import create_key
    from app.connectors.registry import build_source, ensure_env_connectors
    from app.connectors.runner import run_cycle
    from app.connectors.runs import Trigger
    from app.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            (connector,) = await ensure_env_connectors(session, settings)
        report = await run_cycle(
            sessionmaker,
            connector.id,
            build_source(settings, connector),
            full=True,
            trigger=Trigger.STARTUP,
        )
        if not report.ok:
            raise RosterError(f"the demo's first sync failed: {report.error}")
        async with sessionmaker.begin() as session:
            _, key = await create_key(session, "demo", ["write"])
        return key, connector.id, report.pages, report.objects
    finally:
        await engine.dispose()


async def _serve(
    options: DemoOptions,
    settings: Settings,
    simulator: RunningSimulator,
    echo: Echo,
    started: float,
) -> None:
    from app.main import create_asgi

    key, connector_id, pages, objects = await _first_sync(settings)
    synced_in = time.perf_counter() - started
    server = uvicorn.Server(
        uvicorn.Config(
            create_asgi(settings),
            host=options.host,
            port=options.port,
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # raises what stopped it (e.g. the port is taken)
            raise RosterError("the HTTP API did not start")
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://{options.host}:{port}"
    answers = await _lookups(base, key, _examples(simulator.state))
    _banner(echo, options, simulator, base, key, connector_id, answers, (pages, objects, synced_in))
    await serving


def _examples(state: SimulatorState) -> list[Example]:
    """An alias, a disabled shared mailbox and an unknown address of the seeded tenant."""
    expected = state.expected_accepted()
    users = list(state.store.live["users"].values())
    alias = next(
        address
        for user in users
        if user.get("accountEnabled") and user.get("mail")
        for address, primary in expected.items()
        if primary == str(user["mail"]).lower()
        and address != primary
        and address.endswith(f"@{state.tenant_id}.com")
    )
    shared = next(
        str(u["mail"])
        for u in users
        if not u.get("accountEnabled")
        and str(u.get("displayName", "")).startswith("Shared")
        and str(u.get("mail", "")).lower() in expected
    )
    return [
        Example("an alias", alias),
        Example("a disabled shared mailbox", shared),
        Example("an unknown address", f"nobody@{state.tenant_id}.com"),
    ]


async def _lookups(
    base: str, key: str, examples: list[Example]
) -> list[tuple[Example, int, dict[str, Any]]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
        answers = []
        for example in examples:
            response = await client.get(f"/v1/recipients/{example.address}")
            answers.append((example, response.status_code, response.json()))
        return answers


def _banner(
    echo: Echo,
    options: DemoOptions,
    simulator: RunningSimulator,
    base: str,
    key: str,
    connector_id: str,
    answers: list[tuple[Example, int, dict[str, Any]]],
    sync: tuple[int, int, float],
) -> None:
    state = simulator.state
    pages, objects, synced_in = sync
    counts = state.snapshot()
    lines = [
        "",
        f"Roster demo: simulated Microsoft 365 tenant {state.tenant_id!r} mirrored into SQLite",
        f"  synced:           {counts['users']} users, {counts['groups']} groups, "
        f"{counts['contacts']} contacts, {counts['memberships']} memberships "
        f"({objects} objects in {pages} pages, {synced_in:.1f} s)",
        f"  database:         {options.database.resolve()}",
        f"  Lookup API:       {base}/v1/recipients/{{address}}",
        f"  API docs:         {base}/docs",
        f"  connectors:       {base}/v1/connectors",
        f"  Graph simulator:  {simulator.base_url} (control API {simulator.origin}/_control/state)",
        f"  API key:          {key}",
        "",
        f'Example lookups (curl -H "Authorization: Bearer {key}" URL):',
    ]
    for example, status, body in answers:
        lines.append(f"  {example.label + ':':28} GET {base}/v1/recipients/{example.address}")
        lines.append(f"  {'':28} -> {status} {orjson.dumps(body).decode()}")
    lines += [
        "",
        "Change the tenant and watch Roster follow (a delta round runs every "
        f"{options.poll_interval:.0f} s, or at once after "
        f"POST {base}/v1/connectors/{connector_id}/sync):",
        f"  curl --cacert {simulator.ca_file} -X POST {simulator.origin}/_control/users "
        '-H "Content-Type: application/json" '
        f'-d \'{{"mail": "new.hire@{state.tenant_id}.com"}}\'',
        "",
        "Press Ctrl-C to stop.",
    ]
    for line in lines:
        echo(line)


def stop_quietly() -> contextlib.AbstractContextManager[None]:
    """Ctrl-C is how a demo ends: no traceback."""
    return contextlib.suppress(KeyboardInterrupt)

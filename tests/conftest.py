"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL server.

Each test run creates its own PostgreSQL database (and drops it afterwards) on the server named by
ROSTER_TEST_POSTGRES_URL; SQLite gets a fresh file. Both are migrated with Alembic, never
create_all. After each test the tables are emptied, because the code under test commits through
its own engines (the API, the index poller), which an outer rolled-back transaction cannot see.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade
from app.main import create_app, create_asgi
from app.settings import Settings

# The Samba AD DC fixture (`samba_dc`), shared by the LDAP connector and the auth API tests;
# one Graph simulator server per session (`simulator_server`), shared by every Graph test.
pytest_plugins = ["tests.connectors.ldap.samba", "tests.graph_simulator"]

POSTGRES_URL = os.environ.get(
    "ROSTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TABLES = [
    "webhook_inbox",
    "graph_subscriptions",
    "imports",
    "learned_senders",
    "address_conflicts",
    "memberships",
    "addresses",
    "pending_deletions",
    "recipients",
    "connector_runs",
    "cursors",
    "connectors",
    "domains",
    "changes",
    "api_keys",
    "tenants",
]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_test_database(kind: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    if kind == "sqlite":
        path = tmp_path_factory.mktemp("db") / "roster.db"
        return f"sqlite+aiosqlite:///{path}", None
    name = f"roster_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(POSTGRES_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(_libpq(POSTGRES_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False), drop


# For tests that need a database only because the app does (nothing engine-specific is
# exercised: request parsing, handshakes, CLI errors): SQLite alone instead of once per engine.
one_engine = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs the Samba tests apart (`-m samba`, one process: the machine has one DC),
    so a test that uses the DC without the `samba` marker would block a parallel worker."""
    unmarked = [
        item.nodeid
        for item in items
        if "samba_dc" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("samba")
    ]
    if unmarked:
        raise pytest.UsageError(f"tests use the Samba DC without @pytest.mark.samba: {unmarked}")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    url, drop = make_test_database(request.param, tmp_path_factory)
    upgrade(url)
    yield url
    if drop is not None:
        drop()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def empty_tables(engine: AsyncEngine) -> None:
    for attempt in range(5):
        try:
            async with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    await conn.execute(
                        text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
                    )
                else:
                    for table in TABLES:
                        await conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608
            return
        except OperationalError as exc:
            # A test's background task (webhook processor, index poller) may still be
            # finishing a transaction: TRUNCATE's table locks can deadlock with it. Try again.
            if "deadlock" not in str(exc) or attempt == 4:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
async def sessionmaker(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    yield create_sessionmaker(engine)
    await empty_tables(engine)


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, index_poll_interval=0.05, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Any]:
    """The full ASGI stack (fast path, body limit, FastAPI) with its lifespan running."""
    asgi = create_asgi(settings)
    fastapi_app = asgi.app.app
    async with fastapi_app.router.lifespan_context(fastapi_app):
        yield asgi
    await empty_tables(engine)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://roster.test"
    ) as client:
        yield client


@pytest.fixture
def fastapi_only(settings: Settings) -> Any:
    """The FastAPI app without the fast path: proves the documented route answers the same."""
    return create_app(settings)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]

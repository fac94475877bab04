"""`roster secrets rotate` as an operator runs it: a subprocess on a real database (both kinds).

The end-to-end test lets the real subscription manager write `graph_subscriptions` rows against
the simulator (with Roster's webhooks served for the handshake), rotates to a new key with the
CLI, and then has the simulator notify a Roster that knows only the new key.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.graph.models import GraphSubscription, WebhookInbox
from app.connectors.graph.notifications import SubscriptionRegistry
from app.connectors.graph.secrets import ClientStateCipher, SecretUndecryptable
from app.connectors.graph.subscription_client import subscription_client_factory
from app.connectors.graph.subscriptions import ManagerOptions, SubscriptionManager
from app.crypto import KEY_CHANGED
from app.directory.records import SourceKind
from app.settings import Settings
from app.simulator.graph import RunningSimulator, SimulatorState, TenantSpec, start_in_thread
from app.simulator.graph.subscriptions import subscription_service
from tests.conftest import _libpq
from tests.connectors.graph.test_notifications import eventually, free_port, graph_settings, serve
from tests.factories import make_connector
from tests.test_crypto import legacy_client_state_token

OLD = "old-secret-key-0123456789"
NEW = "new-secret-key-9876543210"
OTHER = "someone-elses-key-000000"


def roster(
    database_url: str, *args: str, key: str | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env |= {"ROSTER_DATABASE_URL": database_url, "COLUMNS": "200"}
    if key is not None:
        env["ROSTER_SECRET_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def rotate(database_url: str, key: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(roster, database_url, "secrets", "rotate", key=key, cwd=cwd)


async def tokens(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(GraphSubscription.id, GraphSubscription.client_state_encrypted)
        )
        return dict(rows.all())


async def inbox(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return len(list(await session.scalars(select(WebhookInbox))))


async def add_rows(
    sessionmaker: async_sessionmaker[AsyncSession], tokens_by_id: dict[str, str], connector_id: str
) -> None:
    now = datetime.now(UTC)
    async with sessionmaker.begin() as session:
        for sub_id, token in tokens_by_id.items():
            session.add(
                GraphSubscription(
                    id=sub_id, connector_id=connector_id, resource="/users",
                    client_state_encrypted=token, expires_at=now + timedelta(days=2),
                    created_at=now,
                )
            )  # fmt: skip


async def graph_connector(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker.begin() as session:
        return (await make_connector(session, SourceKind.GRAPH, name="graph")).id


def database_copy(database_url: str, tmp_path: Path) -> bytes:
    """Every byte a thief with a copy of the database would have."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # The files themselves (the WAL holds recent pages), copied as a thief would, by `cp`
        # in another process: closing a descriptor of the live file in this process would drop
        # every POSIX lock it holds on it, and the next SQLite process to close would then
        # delete the WAL from under this process's engine.
        assert url.database is not None
        copied = b""
        for suffix in ("", "-wal"):
            source = Path(url.database + suffix)
            if source.exists():
                target = tmp_path / f"copy.db{suffix}"
                subprocess.run(["cp", str(source), str(target)], timeout=60, check=True)
                copied += target.read_bytes()
        return copied
    dump = subprocess.run(
        ["pg_dump", "--data-only", _libpq(database_url)],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return dump.stdout


@pytest.fixture
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    state = SimulatorState.seeded(TenantSpec(users=5, groups=2, contacts=0, memberships=4), seed=3)
    running = start_in_thread(state, cert_dir=tmp_path_factory.mktemp("sim-certs"))
    yield running
    running.stop()


async def test_rotated_client_states_open_with_the_new_key_alone_and_notifications_verify(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    sim: RunningSimulator,
    database_url: str,
    tmp_path: Path,
) -> None:
    before_rotation = settings.model_copy(
        update={
            "secret_key": SecretStr(OLD),
            "public_url": f"http://127.0.0.1:{free_port()}",
            "run_connectors": False,
        }
    )
    assert before_rotation.public_url is not None
    service = subscription_service(sim.state)
    connector_id = await graph_connector(sessionmaker)
    try:
        async with serve(before_rotation) as app:
            manager = SubscriptionManager(
                sessionmaker, connector_id,
                client_factory=subscription_client_factory(graph_settings(sim)),
                public_url=before_rotation.public_url, cipher=ClientStateCipher(OLD),
                registry=app.state.graph_webhooks.registry,
                options=ManagerOptions(start_delay=0),
            )  # fmt: skip
            assert len((await manager.reconcile()).created) == 2
        states = {sub.id: sub.client_state for sub in service.all()}
        stored = await tokens(sessionmaker)
        assert set(stored) == set(states)

        result = await rotate(database_url, f"{NEW},{OLD}", tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "rotated 2 graph subscription secrets"

        rotated = await tokens(sessionmaker)
        assert set(rotated) == set(stored)
        for sub_id, token in rotated.items():
            assert token != stored[sub_id]
            opened = ClientStateCipher(NEW).decrypt(
                token, subscription_id=sub_id, connector_id=connector_id
            )
            assert opened == states[sub_id]
            with pytest.raises(SecretUndecryptable):
                ClientStateCipher(OLD).decrypt(
                    token, subscription_id=sub_id, connector_id=connector_id
                )

        after_rotation = before_rotation.model_copy(update={"secret_key": SecretStr(NEW)})
        async with serve(after_rotation) as app:
            stats = app.state.graph_webhooks.stats
            follow_ups = await inbox(sessionmaker)  # the manager asked for a round at creation
            sim.state.add_user(mail="after.rotation@contoso.com")

            async def delivered() -> bool:
                handled = stats.accepted + stats.dropped >= 1 and service.pending() == 0
                return handled and (stats.dropped > 0 or await inbox(sessionmaker) > follow_ups)

            await eventually(delivered, limit=30)  # stored for a delta round, not dropped:
            assert stats.accepted >= 1
            assert (stats.unknown_subscription, stats.bad_client_state) == (0, 0)
            users = next(sub.id for sub in service.all() if sub.resource == "/users")
            forged = await asyncio.to_thread(
                service.forge, manager.notification_url, subscription_id=users,
                client_state="guess",
            )  # fmt: skip
            assert forged == 202 and stats.bad_client_state == 1
    finally:
        service.stop()

    copy = database_copy(database_url, tmp_path)
    assert rotated[users].encode() in copy  # the copy does hold the table...
    for state in states.values():
        assert state is not None and state.encode() not in copy  # ...but no clientState


async def test_old_format_client_states_are_rotated_into_bound_ones(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    connector_id = await graph_connector(sessionmaker)
    states = {"sub-a": "state-of-a-0123456789", "sub-b": "state-of-b-0123456789"}
    await add_rows(
        sessionmaker,
        {sub_id: legacy_client_state_token(OLD, s) for sub_id, s in states.items()},
        connector_id,
    )
    old_registry = SubscriptionRegistry(sessionmaker, ClientStateCipher(OLD))
    assert set(await old_registry.resolve(states)) == set(states)  # unbound rows still open

    result = await rotate(database_url, f"{NEW},{OLD}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rotated 2 graph subscription secrets" in result.stdout

    registry = SubscriptionRegistry(sessionmaker, ClientStateCipher(NEW))
    known = await registry.resolve(states)
    assert {sub_id: sub.client_state.decode() for sub_id, sub in known.items()} == states
    # Now bound: a row holding another row's token does not open.
    rotated = await tokens(sessionmaker)
    await add_rows(sessionmaker, {"sub-copy": rotated["sub-a"]}, connector_id)
    fresh = SubscriptionRegistry(sessionmaker, ClientStateCipher(NEW))
    assert set(await fresh.resolve([*states, "sub-copy"])) == set(states)


async def test_keys_that_cannot_open_a_row_name_it_and_change_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    connector_id = await graph_connector(sessionmaker)
    good = ClientStateCipher(OLD).encrypt("good-state-0123456789", subscription_id="sub-good",
                                          connector_id=connector_id)  # fmt: skip
    foreign = ClientStateCipher(OTHER).encrypt("foreign-state-0123456789",
                                               subscription_id="sub-foreign",
                                               connector_id=connector_id)  # fmt: skip
    await add_rows(
        sessionmaker,
        {"sub-good": good, "sub-foreign": foreign, "sub-copied": good},
        connector_id,
    )
    before = await tokens(sessionmaker)

    result = await rotate(database_url, f"{NEW},{OLD}", tmp_path)
    assert result.returncode == 1
    assert f"graph subscription secrets: row sub-foreign: {KEY_CHANGED}" in result.stderr
    assert "row sub-copied: a stored secret does not belong to this record" in result.stderr
    assert "row sub-good" not in result.stderr
    assert "nothing was rotated" in result.stderr
    output = result.stdout + result.stderr
    for secret in ("good-state", "foreign-state", OLD, NEW, OTHER):
        assert secret not in output
    assert await tokens(sessionmaker) == before


async def test_rotate_without_a_key_names_the_setting(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    missing = await rotate(database_url, None, tmp_path)
    assert missing.returncode == 1
    assert "ROSTER_SECRET_KEY is not set" in missing.stderr
    short = await rotate(database_url, f"{NEW},short", tmp_path)
    assert short.returncode == 1
    assert "ROSTER_SECRET_KEY: key 2 of 2 is shorter than 16 characters" in short.stderr
    empty = await rotate(database_url, NEW, tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == "rotated 0 graph subscription secrets"

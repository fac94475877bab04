"""The listeners as the app's lifespan runs them: configured by settings, answering from the
app's LookupIndex, learning through the database, closed (and flushed) on shutdown."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.connectors.mailflow import learning
from app.db.engine import create_sessionmaker
from app.mailproto import netstring
from app.main import create_app
from app.settings import Settings
from tests.conftest import empty_tables, one_engine
from tests.factories import api_domain, make_key


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


async def ask_socketmap(host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(netstring.encode(request))
    length = await asyncio.wait_for(reader.readuntil(b":"), 5)
    reply = await reader.readexactly(int(length[:-1]) + 1)
    writer.close()
    return reply[:-1]


async def ask_policy(port: int, **attributes: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    block = "".join(f"{k}={v}\n" for k, v in attributes.items()) + "\n"
    writer.write(block.encode())
    reply = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
    writer.close()
    return reply


@one_engine  # listeners and sockets: the database only backs the index
@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback here")
async def test_lifespan_starts_configured_listeners_on_ipv4_and_ipv6(
    database_url: str, engine: AsyncEngine
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        database_url=database_url,
        socketmap_listen="[::1]:0",
        tcp_table_listen="127.0.0.1:0",
        policy_listen=None,
        index_poll_interval=0.05,
        _env_file=None,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        listeners = {x.protocol: x for x in app.state.mail.listeners}
        assert sorted(listeners) == ["socketmap", "tcp_table"]
        assert listeners["socketmap"].addresses[0][0] == "::1"
        # Nothing synced yet: the index has no domains, so the answer is "not ours".
        port = listeners["socketmap"].port
        assert await ask_socketmap("::1", port, b"recipients a@contoso.com") == b"NOTFOUND "
        assert await ask_socketmap("::1", port, b"nomap x") == b"PERM unknown map"
    assert all(x.server is not None and not x.server.is_serving() for x in listeners.values())
    await empty_tables(engine)


@one_engine
async def test_no_listen_address_means_no_listener(app: Any) -> None:
    assert app.app.app.state.mail.listeners == []


async def test_policy_listener_learns_trusted_senders_and_shutdown_flushes_the_queue(
    database_url: str, engine: AsyncEngine
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        database_url=database_url,
        policy_listen="127.0.0.1:0",
        trusted_networks=["10.1.0.0/16"],
        index_poll_interval=0.05,
        _env_file=None,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://roster.test"
        ) as client,
    ):
        async with app.state.sessionmaker.begin() as session:
            key = await make_key(session, "write")
        await api_domain(client, key, "contoso.com")
        (listener,) = app.state.mail.listeners
        app.state.mail.learner.flush_interval = 60  # only the shutdown flush may write
        common = {
            "request": "smtpd_access_policy",
            "protocol_state": "RCPT",
            "recipient": "someone@elsewhere.org",
        }
        for sender, client_address, sasl in [
            ("spoof@contoso.com", "192.0.2.9", ""),
            ("trusted@contoso.com", "10.1.2.3", ""),
            ("sasl@contoso.com", "192.0.2.10", "sasl-user"),
            ("outsider@gmail.com", "10.1.2.3", ""),
        ]:
            reply = await ask_policy(
                listener.port,
                **common,
                sender=sender,
                client_address=client_address,
                sasl_username=sasl,
            )
            assert reply == b"action=DUNNO\n\n"
        await asyncio.sleep(0.05)  # let the learner tasks queue their sightings
    async with create_sessionmaker(engine)() as session:
        views, _ = await learning.list_learned(session)
    assert sorted((v.sender.address, v.sender.evidence) for v in views) == [
        ("sasl@contoso.com", "sasl:sasl-user"),
        ("trusted@contoso.com", "network:10.1.2.3"),
    ]
    await empty_tables(engine)

"""The three listeners over real TCP sockets, with a dict-backed resolver."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.directory.lookup import LookupIndex
from app.mailproto import netstring, server
from app.mailproto.policy import PolicyRequest
from app.mailproto.server import Listener
from app.mailproto.tcp_table import quote

from .fakes import DictResolver
from .test_resolve_path import ADDRESSES, make_index

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(listener: Listener, host: str = "127.0.0.1") -> Stream:
    return await asyncio.open_connection(host, listener.port)


async def ask(stream: Stream, data: bytes) -> bytes:
    reader, writer = stream
    writer.write(data)
    return await asyncio.wait_for(reader.readline(), 5)


async def ask_netstring(stream: Stream, data: bytes) -> bytes:
    stream[1].write(data)
    return await read_netstring(stream[0])


async def read_netstring(reader: asyncio.StreamReader) -> bytes:
    length = await asyncio.wait_for(reader.readuntil(b":"), 5)
    return await reader.readexactly(int(length[:-1]) + 1)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


@pytest.fixture
async def socketmap() -> AsyncIterator[Listener]:
    listener = await server.start_socketmap_server(DictResolver(), "127.0.0.1", 0, max_request=512)
    yield listener
    await listener.aclose()


@pytest.fixture
async def tcp_table() -> AsyncIterator[Listener]:
    listener = await server.start_tcp_table_server(DictResolver(), "127.0.0.1", 0, max_request=512)
    yield listener
    await listener.aclose()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:10027", ("127.0.0.1", 10027)),
        ("[::1]:10027", ("::1", 10027)),
        ("[::]:0", ("::", 0)),
        ("localhost:25", ("localhost", 25)),
        (" 0.0.0.0:1 ", ("0.0.0.0", 1)),  # noqa: S104
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert server.parse_listen(value) == expected


@pytest.mark.parametrize("value", ["10027", "::1:10027", "[::1]10027", "host:", "h:99999", ":1"])
def test_parse_listen_rejects_ambiguous_values(value: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        server.parse_listen(value)


async def test_socketmap_answers_every_map(socketmap: Listener) -> None:
    stream = await connect(socketmap)

    async def query(request: str) -> bytes:
        return await ask_netstring(stream, netstring.encode(request.encode()))

    assert await query("recipients alice@example.com") == b"OK alice@example.com,"
    assert await query("recipients ali+tag@example.com") == b"OK alice@example.com,"
    assert await query("recipients nobody@example.com") == b"NOTFOUND ,"
    assert await query("recipients bob@elsewhere.org") == b"NOTFOUND ,"
    assert await query("domains example.com") == b"OK acme,"
    assert await query("domains other.org") == b"NOTFOUND ,"
    assert await query("primary ali@example.com") == b"OK alice@example.com,"
    assert await query("recipients a@slow.example") == b"TEMP roster not_ready,"
    stream[1].close()


async def test_socketmap_resolver_exception_is_temp(
    socketmap: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(socketmap)
    writer.write(b"27:recipients boom@example.com,")
    assert await read_netstring(reader) == b"TEMP roster unavailable,"
    assert "mailproto lookup failed" in caplog.text
    writer.close()


async def test_socketmap_unknown_map_or_bad_request_is_perm_and_connection_stays(
    socketmap: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(socketmap)
    writer.write(b"13:virtual a@b.c,10:recipients,28:recipients alice@example.com,")
    assert (await read_netstring(reader)).startswith(b"PERM ")
    assert (await read_netstring(reader)).startswith(b"PERM ")
    assert await read_netstring(reader) == b"OK alice@example.com,"
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    writer.close()


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\n\r\n", b"600:", b"3:abcX", b"99999999999"])
async def test_socketmap_malformed_stream_gets_perm_and_is_closed(
    socketmap: Listener, junk: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(socketmap)
    writer.write(junk)
    assert (await read_netstring(reader)).startswith(b"PERM ")
    assert await closed_by_server(reader)
    assert "malformed input" in caplog.text
    writer.close()
    # The listener is unharmed.
    stream = await connect(socketmap)
    assert await ask_netstring(stream, b"19:domains example.com,") == b"OK acme,"
    stream[1].close()


async def test_socketmap_serves_many_persistent_pipelined_connections(socketmap: Listener) -> None:
    async def client(n: int) -> None:
        reader, writer = await connect(socketmap)
        for _ in range(20):
            writer.write(b"28:recipients alice@example.com,29:recipients nobody@example.com,")
            assert await read_netstring(reader) == b"OK alice@example.com,"
            assert await read_netstring(reader) == b"NOTFOUND ,"
        writer.close()
        await writer.wait_closed()

    await asyncio.gather(*(client(n) for n in range(50)))


async def test_idle_connection_is_closed() -> None:
    listener = await server.start_socketmap_server(DictResolver(), "127.0.0.1", 0, idle_timeout=0.1)
    reader, writer = await connect(listener)
    writer.write(b"19:domains example.com,")
    assert await read_netstring(reader) == b"OK acme,"
    assert await closed_by_server(reader)
    assert not listener.connections
    writer.close()
    await listener.aclose()


async def test_ipv6_loopback_listener() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        listener = await server.start_tcp_table_server(DictResolver(), "::1", 0)
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    stream = await connect(listener, "::1")
    assert await ask(stream, b"get alice@example.com\n") == b"200 alice@example.com\n"
    stream[1].close()
    await listener.aclose()


async def test_graceful_shutdown_closes_open_connections() -> None:
    listener = await server.start_socketmap_server(DictResolver(), "127.0.0.1", 0)
    port = listener.port
    streams = [await connect(listener) for _ in range(5)]
    await asyncio.sleep(0)  # let the server accept them
    await server.close_all([listener], grace=1)
    for reader, writer in streams:
        assert await closed_by_server(reader)
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_tcp_table_verdicts(tcp_table: Listener) -> None:
    stream = await connect(tcp_table)
    assert await ask(stream, b"get alice@example.com\n") == b"200 alice@example.com\n"
    assert await ask(stream, b"get Ali+X@Example.com\n") == b"200 alice@example.com\n"
    assert await ask(stream, b"get nobody@example.com\n") == b"500 not%20found\n"
    assert await ask(stream, b'get "we%20ird"@example.com\n') == b"500 not%20found\n"
    assert await ask(stream, b"get x@slow.example\n") == b"400 roster%20not_ready\n"
    assert await ask(stream, b"get boom@example.com\n") == b"400 roster%20unavailable\n"
    assert await ask(stream, b"put a b\n") == b"400 malformed%20request\n"
    stream[1].close()


async def test_tcp_table_overlong_line_gets_400_and_close(tcp_table: Listener) -> None:
    reader, writer = await connect(tcp_table)
    writer.write(b"get " + b"a" * 1000)
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"400 ")
    assert await closed_by_server(reader)
    writer.close()


def policy_block(recipient: str, state: str = "RCPT", **extra: str) -> bytes:
    attrs = {
        "request": "smtpd_access_policy",
        "protocol_state": state,
        "client_address": "203.0.113.9",
        "sender": "someone@outside.org",
        "recipient": recipient,
        "sasl_username": "",
        **extra,
    }
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


async def test_policy_verdicts() -> None:
    listener = await server.start_policy_server(DictResolver(), "127.0.0.1", 0)
    reader, writer = await connect(listener)

    async def action(block: bytes) -> bytes:
        writer.write(block)
        return await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)

    assert await action(policy_block("Alice+tag@EXAMPLE.com")) == b"action=DUNNO\n\n"
    assert await action(policy_block("nobody@example.com")) == (
        b"action=550 5.1.1 User unknown\n\n"
    )
    assert await action(policy_block("x@elsewhere.org")) == b"action=DUNNO\n\n"
    assert await action(policy_block("x@slow.example")) == (
        b"action=451 4.3.0 Temporary lookup failure (roster not_ready)\n\n"
    )
    assert (await action(policy_block("boom@example.com"))).startswith(b"action=451 4.3.0 ")
    assert await action(policy_block("we ird@example.com")) == (
        b"action=550 5.1.3 Bad recipient address syntax\n\n"
    )
    assert await action(policy_block("we ird@elsewhere.org")) == b"action=DUNNO\n\n"
    assert await action(policy_block("nobody@example.com", "DATA")) == b"action=DUNNO\n\n"
    writer.close()
    await listener.aclose()


async def test_policy_malformed_block_is_dropped_without_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = await server.start_policy_server(DictResolver(), "127.0.0.1", 0, max_request=1000)
    for junk in (b"hello\n\n", b"\n", b"a=" + b"x" * 2000):
        reader, writer = await connect(listener)
        writer.write(junk)
        assert await closed_by_server(reader)
        writer.close()
    assert caplog.text.count("malformed input") == 3
    await listener.aclose()


async def test_policy_learns_only_trusted_senders_in_our_domains() -> None:
    learned: list[tuple[str, str]] = []

    async def learner(sender: str, request: PolicyRequest) -> None:
        learned.append((sender, request.protocol_state))
        if sender.startswith("crash"):
            raise RuntimeError("learner bug")

    listener = await server.start_policy_server(
        DictResolver(), "127.0.0.1", 0, learner=learner, trusted_networks=["10.0.0.0/8"]
    )
    reader, writer = await connect(listener)
    blocks = [
        policy_block("bob@contoso.com", sender="carol@example.com", sasl_username="carol"),
        policy_block("x@gmail.com", sender="dave@example.com", client_address="10.1.1.1"),
        policy_block("x@gmail.com", "END-OF-MESSAGE", sender="eve@example.com", sasl_username="e"),
        policy_block("alice@example.com", sender="spoof@example.com"),  # untrusted
        policy_block("x@y.org", sender="me@gmail.com", sasl_username="me"),  # foreign domain
        policy_block("x@y.org", "DATA", sender="late@example.com", sasl_username="l"),
        policy_block("x@y.org", sender="crash@example.com", sasl_username="c"),
    ]
    for block in blocks:
        writer.write(block)
        assert (await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)).startswith(b"action=")
    await listener.aclose(grace=5)
    assert learned == [
        ("carol@example.com", "RCPT"),
        ("dave@example.com", "RCPT"),
        ("eve@example.com", "END-OF-MESSAGE"),
        ("crash@example.com", "RCPT"),
    ]
    writer.close()


class LookupOnly:
    """The real index without `resolve`, so the servers take their full (reference) path."""

    def __init__(self, index: LookupIndex) -> None:
        self.lookup = index.lookup
        self.lookup_domain = index.lookup_domain


async def replies(listener: Listener, requests: list[bytes], read: Callable[..., Any]) -> bytes:
    """Replies to `requests`, sent one at a time and then all in one write."""
    reader, writer = await connect(listener)
    answers = []
    for request in requests:
        writer.write(request)
        answers.append(await read(reader))
    writer.write(b"".join(requests))
    answers += [await read(reader) for _ in requests]
    writer.close()
    return b"|".join(answers)


SOCKETMAP_REQUESTS = [
    *(b"%s %s" % (m, a.encode()) for a in ADDRESSES for m in (b"recipients", b"primary")),
    *(b"domains " + d for d in (b"contoso.com", b"CONTOSO.com", b"other.org", b"")),
    b"virtual a@contoso.com",
    b"recipients \xff@contoso.com",
    b"recipients",
    b"\xffrecipients alice@contoso.com",
]


@pytest.mark.parametrize("state", [{}, {"ready": False}, {"stale": True}, {"loaded": False}])
async def test_socketmap_fast_path_answers_like_the_full_path(state: dict[str, bool]) -> None:
    index = make_index(**state)
    requests = [netstring.encode(r) for r in SOCKETMAP_REQUESTS]
    lean = await server.start_socketmap_server(index, "127.0.0.1", 0)
    full = await server.start_socketmap_server(LookupOnly(index), "127.0.0.1", 0)
    assert await replies(lean, requests, read_netstring) == await replies(
        full, requests, read_netstring
    )
    await server.close_all([lean, full])


@pytest.mark.parametrize("state", [{}, {"ready": False}, {"healthy": False}])
async def test_tcp_table_fast_path_answers_like_the_full_path(state: dict[str, bool]) -> None:
    index = make_index(**state)
    keys = [quote(a) for a in ADDRESSES if a] + [b"al%2Bx@contoso.com", b"%FF@x"]
    requests = [b"get %s\n" % k for k in keys] + [b"get a b\n", b"put x\n", b"get \r\n"]

    async def read(reader: asyncio.StreamReader) -> bytes:
        return await asyncio.wait_for(reader.readline(), 5)

    lean = await server.start_tcp_table_server(index, "127.0.0.1", 0)
    full = await server.start_tcp_table_server(LookupOnly(index), "127.0.0.1", 0)
    assert await replies(lean, requests, read) == await replies(full, requests, read)
    await server.close_all([lean, full])


async def test_resolve_exception_is_temp(caplog: pytest.LogCaptureFixture) -> None:
    index = make_index()

    def explode(key: str) -> Any:
        raise RuntimeError("index exploded")

    index.resolve = explode  # type: ignore[method-assign]
    socketmap = await server.start_socketmap_server(index, "127.0.0.1", 0)
    tcp = await server.start_tcp_table_server(index, "127.0.0.1", 0)
    streams = [await connect(socketmap), await connect(tcp)]
    reply = await ask_netstring(streams[0], b"28:recipients alice@contoso.com,")
    assert reply == b"TEMP roster unavailable,"
    assert await ask(streams[1], b"get alice@contoso.com\n") == b"400 roster%20unavailable\n"
    assert caplog.text.count("mailproto lookup failed") == 2
    for _, writer in streams:
        writer.close()
    await server.close_all([socketmap, tcp])

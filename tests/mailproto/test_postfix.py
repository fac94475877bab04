"""End to end: a real Postfix asks Roster's listeners, we speak raw SMTP to Postfix.

Expected replies are the ones Postfix 3.7 gives: docs/outside-behaviour.md §9 and
docs/contracts.md §7.
"""

from __future__ import annotations

import asyncio

import pytest

from .conftest import RosterPostfix
from .postfix import postmap_query

pytestmark = pytest.mark.postfix

TABLE_MODES = ["socketmap", "socketmap_domains", "tcp_table"]
ALL_MODES = [*TABLE_MODES, "policy"]
KNOWN = [
    "alice@example.com",
    "ALICE@Example.COM",
    "alice+news@example.com",
    "Alice+News@EXAMPLE.com",
    "ali@example.com",  # alias
    "bob@contoso.com",
]


@pytest.mark.parametrize("mode", ALL_MODES)
async def test_known_address_any_case_alias_and_subaddress_is_accepted(
    roster_postfix: RosterPostfix, mode: str
) -> None:
    probe = await roster_postfix.probe(mode)
    replies = await probe.rcpts(KNOWN)
    await probe.close()
    assert all(reply == "250 2.1.5 Ok" for reply in replies.values()), replies


@pytest.mark.parametrize("mode", TABLE_MODES)
async def test_unknown_address_in_our_domain_is_550_5_1_1_for_tables(
    roster_postfix: RosterPostfix, mode: str
) -> None:
    probe = await roster_postfix.probe(mode)
    reply = await probe.rcpt("Nobody+x@example.com")
    await probe.close()
    assert reply == (
        "550 5.1.1 <Nobody+x@example.com>: Recipient address rejected: "
        "User unknown in relay recipient table"
    )


async def test_unknown_address_in_our_domain_is_550_5_1_1_for_policy(
    roster_postfix: RosterPostfix,
) -> None:
    # The wire reply of docs/contracts.md §7: Postfix adds "<addr>: Recipient address rejected:"
    # itself.
    probe = await roster_postfix.probe("policy")
    replies = await probe.rcpts(["Nobody+x@example.com", "nobody@contoso.com"])
    await probe.close()
    assert replies == {
        "Nobody+x@example.com": (
            "550 5.1.1 <Nobody+x@example.com>: Recipient address rejected: User unknown"
        ),
        "nobody@contoso.com": (
            "550 5.1.1 <nobody@contoso.com>: Recipient address rejected: User unknown"
        ),
    }


@pytest.mark.parametrize("mode", ALL_MODES)
async def test_other_domain_is_relay_access_denied(
    roster_postfix: RosterPostfix, mode: str
) -> None:
    probe = await roster_postfix.probe(mode)
    reply = await probe.rcpt("someone@elsewhere.org")
    await probe.close()
    assert reply == "554 5.7.1 <someone@elsewhere.org>: Relay access denied"


@pytest.mark.parametrize("mode", TABLE_MODES)
@pytest.mark.parametrize("address", ["x@slow.example", "boom@example.com"])
async def test_tempfail_or_resolver_error_is_451_for_tables(
    roster_postfix: RosterPostfix, mode: str, address: str
) -> None:
    probe = await roster_postfix.probe(mode)
    reply = await probe.rcpt(address)
    await probe.close()
    assert reply == f"451 4.3.0 <{address}>: Temporary lookup failure"


@pytest.mark.parametrize("address", ["x@slow.example", "boom@example.com"])
async def test_tempfail_or_resolver_error_is_451_for_policy(
    roster_postfix: RosterPostfix, address: str
) -> None:
    probe = await roster_postfix.probe("policy")
    reply = await probe.rcpt(address)
    await probe.close()
    assert reply.startswith(
        f"451 4.3.0 <{address}>: Recipient address rejected: Temporary lookup failure"
    )


@pytest.mark.parametrize("mode", ["socketmap_down", "policy_down"])
async def test_roster_down_defers_never_accepts_or_rejects(
    roster_postfix: RosterPostfix, mode: str
) -> None:
    probe = await roster_postfix.probe(mode)
    replies = await probe.rcpts(["alice@example.com", "nobody@example.com"])
    await probe.close()
    assert all(reply.startswith("451 4.3.") for reply in replies.values()), replies


async def test_listeners_keep_answering_after_errors_junk_and_vanishing_clients(
    roster_postfix: RosterPostfix,
) -> None:
    """Self-contained: this test sends the harmful input itself, whatever ran before it."""
    hostile = ["boom@example.com", "x@slow.example", '"we ird"@example.com', "a@elsewhere.org"]
    for mode in ALL_MODES:  # resolver errors, tempfails and odd addresses through Postfix
        probe = await roster_postfix.probe(mode)
        replies = await probe.rcpts(hostile)
        await probe.close()
        assert not any(reply.startswith("250") for reply in replies.values()), (mode, replies)
    junk = [b"GET / HTTP/1.1\r\n\r\n", b"99999999999", b"3:abcX", b"\x00\xff" * 600, b"12:recip"]
    for name, listener in roster_postfix.listeners.items():
        for data in junk:  # straight at the listener, hanging up without reading the answer
            _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            writer.write(data)
            await writer.drain()
            writer.transport.abort()
        assert listener.server is not None and listener.server.is_serving(), name

    # Every listener still answers, directly and through Postfix.
    sm = await asyncio.open_connection("127.0.0.1", roster_postfix.listeners["socketmap"].port)
    sm[1].write(b"28:recipients alice@example.com,")
    assert await asyncio.wait_for(sm[0].readuntil(b","), 10) == b"20:OK alice@example.com,"
    sm[1].close()
    tcp = await asyncio.open_connection("127.0.0.1", roster_postfix.listeners["tcp_table"].port)
    tcp[1].write(b"get alice@example.com\n")
    assert await asyncio.wait_for(tcp[0].readline(), 10) == b"200 alice@example.com\n"
    tcp[1].close()
    for mode in [*ALL_MODES, "policy_trusted"]:
        probe = await roster_postfix.probe(mode)
        assert await probe.rcpt("alice@example.com") == "250 2.1.5 Ok", mode
        await probe.close()
    assert "fatal" not in roster_postfix.postfix.maillog()
    assert "panic" not in roster_postfix.postfix.maillog()


async def test_postmap_queries_every_map(roster_postfix: RosterPostfix) -> None:
    sm = roster_postfix.listeners["socketmap"].port
    tcp = roster_postfix.listeners["tcp_table"].port
    table = f"socketmap:inet:127.0.0.1:{sm}"
    etc = roster_postfix.postfix.etc
    assert await postmap_query(etc, "alice@example.com", f"{table}:recipients") == (
        0,
        "alice@example.com",
    )
    assert await postmap_query(etc, "ali+x@example.com", f"{table}:recipients") == (
        0,
        "alice@example.com",
    )
    assert await postmap_query(etc, "ali@example.com", f"{table}:primary") == (
        0,
        "alice@example.com",
    )
    assert await postmap_query(etc, "contoso.com", f"{table}:domains") == (0, "contoso")
    assert (await postmap_query(etc, "nobody@example.com", f"{table}:recipients"))[0] == 1
    assert await postmap_query(etc, "alice@example.com", f"tcp:127.0.0.1:{tcp}") == (
        0,
        "alice@example.com",
    )
    assert (await postmap_query(etc, "nobody@example.com", f"tcp:127.0.0.1:{tcp}"))[0] == 1


async def test_policy_learns_senders_only_from_trusted_clients(
    roster_postfix: RosterPostfix,
) -> None:
    untrusted = await roster_postfix.probe("policy")
    assert await untrusted.rcpt("alice@example.com", sender="spoof@example.com") == "250 2.1.5 Ok"
    await untrusted.close()
    trusted = await roster_postfix.probe("policy_trusted")
    assert await trusted.rcpt("alice@example.com", sender="carol@example.com") == "250 2.1.5 Ok"
    assert await trusted.rcpt("alice@example.com", sender="x@gmail.com") == "250 2.1.5 Ok"
    await trusted.close()
    senders = [sender for sender, _ in roster_postfix.learned]
    assert "carol@example.com" in senders
    assert "spoof@example.com" not in senders
    assert "x@gmail.com" not in senders


async def test_quoted_local_part_with_space_is_refused_in_every_mode(
    roster_postfix: RosterPostfix,
) -> None:
    # Postfix retries the key unquoted ("we ird@example.com"); Roster calls it malformed.
    for mode, reply in [
        ("socketmap", "550 5.1.1 <we ird@example.com>: Recipient address rejected: User unknown"),
        ("tcp_table", "550 5.1.1 <we ird@example.com>: Recipient address rejected: User unknown"),
        ("policy", "550 5.1.3 <we ird@example.com>: Recipient address rejected: Bad recipient"),
    ]:
        probe = await roster_postfix.probe(mode)
        assert (await probe.rcpt('"we ird"@example.com')).startswith(reply)
        await probe.close()

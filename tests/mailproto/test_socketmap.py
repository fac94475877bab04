"""socketmap requests and replies as bytes (socketmap_table(5), docs/outside-behaviour.md §7)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.directory.verdicts import LookupResult, Reason, Verdict
from app.mailproto import netstring
from app.mailproto.socketmap import (
    MAPS,
    SocketmapError,
    SocketmapMap,
    SocketmapRequest,
    format_perm,
    format_reply,
    parse_request,
    payload,
    reply,
    split_request,
)

ACCEPT = LookupResult(
    "alice+news@example.com",
    Verdict.ACCEPT,
    matched="alice@example.com",
    primary="alice.smith@example.com",
    tenant="contoso",
)


def test_request_splits_map_and_key_at_the_first_space() -> None:
    assert parse_request(b"recipients alice@example.com") == SocketmapRequest(
        "recipients", "alice@example.com"
    )
    # Postfix retries a quoted local part unquoted; the quoted form keeps its space.
    assert parse_request(b'recipients "we ird"@example.com').key == '"we ird"@example.com'
    assert parse_request(b"recipients \xc3\xbcser@example.com").key == "üser@example.com"


@pytest.mark.parametrize(
    "payload", [b"recipients", b"recipients ", b" alice@example.com", b"", b"r \xff@x"]
)
def test_malformed_request_is_an_error(payload: bytes) -> None:
    with pytest.raises(SocketmapError):
        parse_request(payload)


def test_accept_answers_the_primary_address() -> None:
    assert format_reply(ACCEPT, SocketmapMap.RECIPIENTS) == b"26:OK alice.smith@example.com,"
    assert format_reply(ACCEPT, SocketmapMap.PRIMARY) == b"26:OK alice.smith@example.com,"


def test_domains_map_answers_the_tenant() -> None:
    domain = LookupResult("example.com", Verdict.ACCEPT, tenant="contoso")
    assert format_reply(domain, SocketmapMap.DOMAINS) == b"10:OK contoso,"


def test_accept_without_primary_falls_back_to_the_address() -> None:
    bare = LookupResult("bob@example.com", Verdict.ACCEPT)
    assert format_reply(bare, SocketmapMap.RECIPIENTS) == b"18:OK bob@example.com,"


@pytest.mark.parametrize(
    "reason",
    [Reason.UNKNOWN_RECIPIENT, Reason.DOMAIN_NOT_ACCEPTED, Reason.DISABLED, Reason.MALFORMED],
)
def test_every_reject_is_notfound_with_its_trailing_space(reason: Reason) -> None:
    result = LookupResult("x@example.com", Verdict.REJECT, reason=reason)
    assert format_reply(result, SocketmapMap.RECIPIENTS) == b"9:NOTFOUND ,"


def test_tempfail_is_temp_with_the_reason() -> None:
    result = LookupResult("x@example.com", Verdict.TEMPFAIL, reason=Reason.NOT_READY)
    assert format_reply(result, SocketmapMap.RECIPIENTS) == b"21:TEMP roster not_ready,"


def test_perm_reply_is_one_line() -> None:
    assert format_perm("bad\nmap") == b"12:PERM bad map,"


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([b"recipients", b"domains", b"primary", b"virtual", b"", b"r\xff"]),
    st.sampled_from([b" ", b"", b"  "]),
    st.binary(max_size=8),
)
def test_split_request_takes_only_what_parse_request_accepts(
    name: bytes, sep: bytes, key: bytes
) -> None:
    data = name + sep + key
    split = split_request(data)
    if split is None:
        # Left to parse_request: junk, or a map the server answers PERM "unknown map".
        with contextlib.suppress(SocketmapError):
            assert MAPS.get(parse_request(data).map_name) is None
        return
    request = parse_request(data)
    assert split == (MAPS[request.map_name], request.key)


@pytest.mark.parametrize("verdict", list(Verdict))
@pytest.mark.parametrize("reason", [None, *Reason])
@pytest.mark.parametrize("value", [None, "", "alice@example.com", "üser@example.com"])
def test_reply_frames_the_payload(verdict: Verdict, reason: Reason | None, value: str) -> None:
    assert reply(verdict, reason, value) == netstring.encode(payload(verdict, reason, value))

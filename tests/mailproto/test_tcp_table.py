"""tcp_table requests and replies as bytes (tcp_table(5), docs/outside-behaviour.md §7)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.directory.verdicts import LookupResult, Reason, Verdict
from app.mailproto.tcp_table import (
    LineDecoder,
    TcpTableError,
    format_error,
    format_reply,
    parse_request,
    quote,
)


def test_request_key_is_percent_decoded() -> None:
    assert parse_request(b"get alice@example.com") == "alice@example.com"
    assert parse_request(b'get "we%20ird"@example.com') == '"we ird"@example.com'
    assert parse_request(b"get %C3%BCser@example.com") == "üser@example.com"
    assert parse_request(b"get 100%25@example.com\r") == "100%@example.com"


@pytest.mark.parametrize(
    "line", [b"get", b"get ", b"put a b", b"GET a@b", b"get a b", b"get %FF@example.com", b""]
)
def test_malformed_request_is_an_error(line: bytes) -> None:
    with pytest.raises(TcpTableError):
        parse_request(line)


def test_quote_encodes_space_percent_controls_and_non_ascii() -> None:
    assert quote("alice@example.com") == b"alice@example.com"
    assert quote("a b%c\tü") == b"a%20b%25c%09%C3%BC"


def test_accept_is_200_with_the_primary() -> None:
    result = LookupResult("a@example.com", Verdict.ACCEPT, primary="Alice Smith@example.com")
    assert format_reply(result) == b"200 Alice%20Smith@example.com\n"


@pytest.mark.parametrize("reason", [Reason.UNKNOWN_RECIPIENT, Reason.DOMAIN_NOT_ACCEPTED])
def test_reject_is_500_not_found(reason: Reason) -> None:
    result = LookupResult("x@example.com", Verdict.REJECT, reason=reason)
    assert format_reply(result) == b"500 not%20found\n"


def test_tempfail_is_4xx_never_5xx() -> None:
    result = LookupResult("x@example.com", Verdict.TEMPFAIL, reason=Reason.STALE)
    assert format_reply(result) == b"400 roster%20stale\n"
    assert format_error("x" * 500).startswith(b"400 ")
    assert len(format_error("x" * 500)) == 4 + 200 + 1


def test_line_decoder_splits_and_buffers() -> None:
    decoder = LineDecoder(max_line=64)
    assert decoder.feed(b"get a@b\nget c") == [b"get a@b"]
    assert decoder.feed(b"@d\n\n") == [b"get c@d", b""]


def test_line_decoder_caps_a_line_without_newline() -> None:
    decoder = LineDecoder(max_line=8)
    decoder.feed(b"get 1234")
    with pytest.raises(TcpTableError, match="longer than 8"):
        decoder.feed(b"5")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x200, exclude_categories=["Cs"])))
def test_quote_matches_the_percent_encoding_rule(value: str) -> None:
    expected = re.sub(rb"[^\x21-\x24\x26-\x7e]", lambda m: b"%%%02X" % m.group()[0], value.encode())
    assert quote(value) == expected


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"get a@b", b"\n", b"\r", b"x" * 5, b"%20", b" "]), max_size=6))
def test_one_read_splits_like_byte_by_byte(parts: list[bytes]) -> None:
    data = b"".join(parts)
    outcomes = []
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        decoder = LineDecoder(max_line=12)
        lines: list[bytes] = []
        try:
            for chunk in chunks:
                lines += decoder.feed(chunk)
        except TcpTableError:
            outcomes.append(None)
            continue
        outcomes.append((lines, decoder._buffer))
    if outcomes[0] is not None:
        assert outcomes[0] == outcomes[1]
    else:
        assert outcomes[1] is None


def test_line_decoder_keeps_the_cap_for_a_single_line() -> None:
    assert LineDecoder(max_line=8).feed(b"get 1234\n") == [b"get 1234"]
    with pytest.raises(TcpTableError):
        LineDecoder(max_line=8).feed(b"get 12345\n")
    assert LineDecoder(max_line=8).feed(b"") == []

"""Netstring framing, byte for byte (socketmap_table(5) examples)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.mailproto.netstring import NetstringDecoder, NetstringError, decode, encode


def test_encode_counts_bytes_not_characters() -> None:
    assert encode(b"recipients alice@example.com") == b"28:recipients alice@example.com,"
    assert encode("ü".encode()) == b"2:\xc3\xbc,"
    assert encode(b"") == b"0:,"


def test_decode_single_frame() -> None:
    assert decode(b"9:NOTFOUND ,") == b"NOTFOUND "
    with pytest.raises(NetstringError):
        decode(b"9:NOTFOUND ,1:")


def test_decoder_returns_several_frames_from_one_read() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"3:abc,0:,5:hello,") == [b"abc", b"", b"hello"]
    assert decoder.pending == 0


def test_decoder_reassembles_frames_split_at_every_byte() -> None:
    stream = b"28:recipients alice@example.com,11:domains a.b,"
    decoder = NetstringDecoder()
    frames: list[bytes] = []
    for i in range(len(stream)):
        frames += decoder.feed(stream[i : i + 1])
    assert frames == [b"recipients alice@example.com", b"domains a.b"]
    assert decoder.pending == 0


def test_payload_may_contain_colons_and_commas() -> None:
    assert NetstringDecoder().feed(b"5:a:,b,,") == [b"a:,b,"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x:abc,", "bad netstring length"),
        (b":abc,", "bad netstring length"),
        (b"-1:a,", "bad netstring length"),
        (b"3:abcX", "comma"),
        (b"3 :abc,", "bad netstring length"),
        (b"99999:", "too long"),
        (b"123456789", "too long or missing colon"),
        (b"abc", "bad netstring length"),
        (b"20000", "too long"),
    ],
)
def test_decoder_rejects_junk(data: bytes, message: str) -> None:
    with pytest.raises(NetstringError, match=message):
        NetstringDecoder(max_length=10_000).feed(data)


def test_length_cap_is_inclusive() -> None:
    assert NetstringDecoder(max_length=3).feed(b"3:abc,") == [b"abc"]
    with pytest.raises(NetstringError, match="too long"):
        NetstringDecoder(max_length=3).feed(b"4:")


def test_junk_after_a_good_frame_raises_after_the_frame_is_consumed() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(b"1:a,") == [b"a"]
    with pytest.raises(NetstringError):
        decoder.feed(b"GET / HTTP/1.0\r\n")


def feed_bytewise(data: bytes, max_length: int) -> tuple[list[bytes], int] | None:
    """The decoder's general loop only (a partial frame is always buffered): frames and
    pending bytes, or None when it raised."""
    decoder = NetstringDecoder(max_length=max_length)
    frames: list[bytes] = []
    try:
        for i in range(len(data)):
            frames += decoder.feed(data[i : i + 1])
    except NetstringError:
        return None
    return frames, decoder.pending


FRAMES = st.lists(st.binary(max_size=30).map(encode), max_size=3).map(b"".join)
JUNK = st.lists(st.sampled_from([b"0", b"1", b"9", b"10", b":", b",", b"x", b" "]), max_size=8)


@settings(max_examples=1000, deadline=None)
@given(FRAMES, JUNK.map(b"".join), st.sampled_from([3, 10, 1024, 10_000]))
def test_one_read_decodes_like_the_general_loop(frames: bytes, junk: bytes, cap: int) -> None:
    """The one-whole-frame fast path changes nothing: a read gives the frames, the pending
    bytes and the errors that byte-by-byte feeding (which never takes it) gives."""
    data = frames + junk
    decoder = NetstringDecoder(max_length=cap)
    try:
        whole = decoder.feed(data)
    except NetstringError:
        # The general loop may hand out the good frames first, but it must fail too.
        assert feed_bytewise(data, cap) is None
        return
    assert feed_bytewise(data, cap) == (whole, decoder.pending)


@pytest.mark.parametrize(
    ("data", "frames"),
    [
        (b"0:,", [b""]),
        (b"007:abcdefg,", [b"abcdefg"]),  # leading zeros: not the fast path, still valid
        (b"3:a,c,", [b"a,c"]),
        (b"1:a,1:b,", [b"a", b"b"]),
        (b"1023:" + b"x" * 1023 + b",", [b"x" * 1023]),  # the largest fast-path frame
        (b"1024:" + b"x" * 1024 + b",", [b"x" * 1024]),
    ],
)
def test_single_reads(data: bytes, frames: list[bytes]) -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(data) == frames
    assert decoder.pending == 0


def test_fast_path_keeps_the_length_cap() -> None:
    with pytest.raises(NetstringError, match="too long"):
        NetstringDecoder(max_length=2).feed(b"3:abc,")

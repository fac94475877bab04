"""Netstring framing, byte for byte (socketmap_table(5) examples)."""

from __future__ import annotations

import pytest

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

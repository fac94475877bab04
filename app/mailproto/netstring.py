"""Netstrings (`<len>:<bytes>,`), the framing of Postfix socketmap requests and replies.

Lengths count bytes, not characters [socketmap_table(5)]. The decoder is incremental because a
TCP read may hold half a frame or several frames; it enforces a length cap so a peer cannot make
us buffer an unbounded request.
"""

from __future__ import annotations

DEFAULT_MAX_LENGTH = 10_000


class NetstringError(ValueError):
    """The peer sent bytes that are not a valid netstring; the connection cannot be resynced."""


def encode(payload: bytes) -> bytes:
    return b"%d:%b," % (len(payload), payload)


def decode(data: bytes, *, max_length: int = DEFAULT_MAX_LENGTH) -> bytes:
    """Decode exactly one complete netstring (no trailing bytes), for tests and one-shot callers."""
    decoder = NetstringDecoder(max_length=max_length)
    frames = decoder.feed(data)
    if len(frames) != 1 or decoder.pending:
        raise NetstringError("expected exactly one complete netstring")
    return frames[0]


def _one_frame_headers(max_length: int) -> tuple[bytes, ...]:
    """headers[size]: the `<len>:` that `size` bytes holding exactly one netstring start with;
    b"" for sizes no netstring has (12 bytes is `9:` + 9 + `,`; 13 bytes is none)."""
    headers = [b""] * (max_length + len(str(max_length)) + 3)
    for length in range(max_length + 1):
        header = b"%d:" % length
        headers[len(header) + length + 1] = header
    return tuple(headers)


# Requests up to 1 KiB (a key is at most 254 octets) take NetstringDecoder's fast path.
_ONE_FRAME_HEADER = _one_frame_headers(1024)


class NetstringDecoder:
    """Turns a byte stream into complete netstring payloads, raising NetstringError on junk.

    After an error the stream position is lost: the caller must drop the connection.
    """

    __slots__ = ("_buffer", "_max_digits", "_max_length")

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 0:
            raise ValueError("max_length must not be negative")
        self._max_length = max_length
        self._max_digits = len(str(max_length))
        self._buffer = b""

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if not self._buffer and len(data) < len(_ONE_FRAME_HEADER):
            # The usual read: Postfix has one request in flight per connection, so `data` is one
            # whole frame, and its size alone says what its header must be: comparing bytes
            # replaces parsing the length (~0.2 µs). Anything else takes the loop below.
            header = _ONE_FRAME_HEADER[len(data)]
            start = len(header)
            if (
                start
                and data[-1] == 0x2C  # ","
                and data[:start] == header
                and len(data) - start - 1 <= self._max_length
            ):
                return [data[start:-1]]
        buf = self._buffer + data if self._buffer else data
        frames: list[bytes] = []
        pos = 0
        size = len(buf)
        while pos < size:
            colon = buf.find(b":", pos, pos + self._max_digits + 1)
            if colon < 0:
                self._check_partial_length(buf[pos:])
                break
            digits = buf[pos:colon]
            if not digits.isdigit():
                raise NetstringError(f"bad netstring length {digits[:20]!r}")
            length = int(digits)
            if length > self._max_length:
                raise NetstringError(f"netstring too long: {length} > {self._max_length}")
            end = colon + 1 + length
            if end >= size:
                break
            if buf[end] != 0x2C:  # ","
                raise NetstringError("netstring not terminated by a comma")
            frames.append(buf[colon + 1 : end])
            pos = end + 1
        self._buffer = buf[pos:]
        return frames

    def _check_partial_length(self, head: bytes) -> None:
        # No colon within the allowed digits: either the length is still arriving or it is junk.
        if len(head) > self._max_digits:
            raise NetstringError(f"netstring length too long or missing colon: {head[:20]!r}")
        if not head.isdigit():
            raise NetstringError(f"bad netstring length {head[:20]!r}")
        if int(head) > self._max_length:
            raise NetstringError(f"netstring too long: {int(head)} > {self._max_length}")

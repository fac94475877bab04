"""Postfix tcp_table codec: `get <%XX key>\\n` in, `<3 digits> <%XX text>\\n` out.

Ref: tcp_table(5). 2xx = found (the text is the value), 5xx = **not found** (there is no
permanent error), 4xx = temporary error, after which Postfix drops the connection. So every
error we report must be 4xx, never 5xx.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from app.directory.verdicts import ACCEPT, REJECT, LookupResult, Reason, Verdict

FOUND = b"200 "
NOT_FOUND = b"500 not%20found\n"
TEMP_ERROR = b"400 "

DEFAULT_MAX_LINE = 4_096
MAX_REASON = 200

_SPACE, _PERCENT = 0x20, 0x25
_UNSAFE = re.compile(rb"[^\x21-\x24\x26-\x7e]")


class TcpTableError(ValueError):
    """A request line that is not `get <key>` with a UTF-8 key."""


def quote(value: str) -> bytes:
    """%XX-encode whitespace, `%`, controls and non-ASCII, as Postfix's tcp client expects."""
    if value.isascii() and value.isprintable() and " " not in value and "%" not in value:
        # Nothing to encode (printable ASCII is \x20-\x7e): skip the regex, ~0.5 µs.
        return value.encode("ascii")
    return _UNSAFE.sub(lambda m: b"%%%02X" % m.group()[0], value.encode("utf-8"))


def parse_request(line: bytes) -> str:
    """Decode one request line (without its newline) to the lookup key."""
    line = line.removesuffix(b"\r")
    command, sep, raw_key = line.partition(b" ")
    if command != b"get" or not sep:
        raise TcpTableError("tcp_table request is not 'get <key>'")
    # Byte values, not b" "/b"%", as needles: `bytes in bytes` costs ~0.5 µs on Python 3.11
    # (it tries the needle as an int first and builds a TypeError), an int ~0.05 µs.
    if not raw_key or _SPACE in raw_key:
        raise TcpTableError("tcp_table key is empty or not %XX-encoded")
    try:
        # unquote_to_bytes returns a key without `%` unchanged; skip its Python-level work.
        return (unquote_to_bytes(raw_key) if _PERCENT in raw_key else raw_key).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TcpTableError("tcp_table key is not UTF-8") from exc


def format_reply(result: LookupResult) -> bytes:
    """Map a verdict to a reply line; every reject reason is 500 (not found)."""
    return reply(result.verdict, result.reason, result.primary or result.matched or result.address)


def reply(verdict: Verdict, reason: Reason | None, value: str | None) -> bytes:
    """The reply line from a bare verdict; `value` is what 200 carries."""
    if verdict is ACCEPT:
        return FOUND + quote(value or "") + b"\n"
    if verdict is REJECT:
        return NOT_FOUND
    return format_error(f"roster {reason.value if reason else 'unavailable'}")


def format_error(reason: str) -> bytes:
    """A temporary-error line (4xx: Postfix defers and reconnects)."""
    return TEMP_ERROR + quote(reason[:MAX_REASON]) + b"\n"


class LineDecoder:
    """Splits a byte stream into `\\n`-terminated lines, refusing lines longer than the cap."""

    __slots__ = ("_buffer", "_max_line")

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE) -> None:
        self._max_line = max_line
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        if not self._buffer:
            # The usual read: exactly one whole request line (Postfix has one in flight).
            end = data.find(b"\n")
            if end == len(data) - 1 and 0 <= end <= self._max_line:
                return [data[:end]]
        buf = self._buffer + data if self._buffer else data
        lines = buf.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > self._max_line or any(len(x) > self._max_line for x in lines):
            raise TcpTableError(f"tcp_table request line longer than {self._max_line} bytes")
        return lines

"""Postfix socketmap codec: netstring `<map> <key>` in, netstring `OK|NOTFOUND|TEMP|PERM` out.

Ref: socketmap_table(5). Postfix lower-cases the key of a case-insensitive table and sends it as
raw UTF-8. `PERM` makes Postfix answer `451 4.3.5 Server configuration error` and mail the
postmaster, so it is only for requests no correct configuration sends (unknown map, junk).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from app.directory.verdicts import ACCEPT, REJECT, LookupResult, Reason, Verdict
from app.mailproto import netstring


class SocketmapMap(StrEnum):
    RECIPIENTS = "recipients"  # accept -> OK <primary>
    DOMAINS = "domains"  # accept -> OK <tenant>
    PRIMARY = "primary"  # alias -> OK <primary>, for canonical_maps-style rewriting


# Reply payloads (before netstring framing). NOTFOUND keeps its trailing space: Postfix's own
# socketmap(5) example server sends it so, and an empty value after it is legal.
OK = b"OK "
NOTFOUND = b"NOTFOUND "
TEMP = b"TEMP "
PERM = b"PERM "

MAX_REASON = 200


class SocketmapError(ValueError):
    """A request that is a valid netstring but not `<map> <key>`."""


# Enum construction by value costs ~1 µs; a dict probe is what the hot path can afford.
MAPS: dict[str, SocketmapMap] = {m.value: m for m in SocketmapMap}


class SocketmapRequest(NamedTuple):  # a NamedTuple builds ~4x faster than a frozen dataclass
    map_name: str
    key: str


# The same table keyed by the raw bytes, for the server's hot path (`split_request`).
MAPS_BY_BYTES: dict[bytes, SocketmapMap] = {m.value.encode("ascii"): m for m in SocketmapMap}


def split_request(payload: bytes) -> tuple[SocketmapMap, str] | None:
    """The common request, `<known map> <UTF-8 key>`, split without a NamedTuple or a decode
    of the map name; None for anything else, which `parse_request` then judges."""
    map_name, _, key = payload.partition(b" ")
    found = MAPS_BY_BYTES.get(map_name)
    if found is None or not key:
        return None
    try:
        return found, key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_request(payload: bytes) -> SocketmapRequest:
    """Split one netstring payload into map name and key (the key may itself contain spaces)."""
    map_name, sep, key = payload.partition(b" ")
    if not sep or not map_name or not key:
        raise SocketmapError("socketmap request is not '<map> <key>'")
    try:
        return SocketmapRequest(map_name.decode("ascii"), key.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SocketmapError("socketmap request is not UTF-8") from exc


def _text(value: str) -> bytes:
    # Reasons and values travel inside one netstring; keep them on one printable line anyway,
    # because Postfix copies TEMP/PERM text into its log.
    return value.replace("\r", " ").replace("\n", " ").encode("utf-8")[:MAX_REASON]


def reply_payload(result: LookupResult, map_name: SocketmapMap) -> bytes:
    """Map a verdict to a socketmap reply payload; every reject reason is plain NOTFOUND."""
    if map_name is SocketmapMap.DOMAINS:
        value = result.tenant or result.address
    else:
        value = result.primary or result.matched or result.address
    return payload(result.verdict, result.reason, value)


def payload(verdict: Verdict, reason: Reason | None, value: str | None) -> bytes:
    """The reply payload from a bare verdict; `value` is what OK carries."""
    if verdict is Verdict.ACCEPT:
        return OK + (value or "").encode("utf-8")
    if verdict is Verdict.REJECT:
        return NOTFOUND
    return TEMP + _text(f"roster {reason.value if reason else 'unavailable'}")


# For `reply`: a framed reply that never varies.
NOTFOUND_REPLY = netstring.encode(NOTFOUND)


def reply(verdict: Verdict, reason: Reason | None, value: str | None) -> bytes:
    """`netstring.encode(payload(...))` in one step, for the lookups the server answers most."""
    if verdict is ACCEPT and value:
        data = value.encode("utf-8")
        return b"%d:OK %b," % (len(data) + 3, data)
    if verdict is REJECT:
        return NOTFOUND_REPLY
    return netstring.encode(payload(verdict, reason, value))


def format_reply(result: LookupResult, map_name: SocketmapMap) -> bytes:
    """The framed reply bytes to write to the socket."""
    return netstring.encode(reply_payload(result, map_name))


def format_temp(reason: str) -> bytes:
    return netstring.encode(TEMP + _text(reason))


def format_perm(reason: str) -> bytes:
    return netstring.encode(PERM + _text(reason))

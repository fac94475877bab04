"""Postfix policy delegation codec: `name=value` lines ending in a blank line in,
`action=<action>\\n\\n` out.

Ref: SMTPD_POLICY_README, access(5). Postfix turns `action=550 5.1.1 User unknown` into
`550 5.1.1 <addr>: Recipient address rejected: User unknown` on the wire: it adds the address and
"Recipient address rejected:" itself, so our action text must not repeat them. A bare `REJECT`
would answer `554 5.7.1`, which is why rejects carry an explicit code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.directory.verdicts import LookupResult, Reason, Verdict

# Actions (the text after "action="); Postfix prefixes "<addr>: Recipient address rejected: ".
DUNNO = "DUNNO"
REJECT_UNKNOWN = "550 5.1.1 User unknown"
REJECT_SYNTAX = "550 5.1.3 Bad recipient address syntax"
DEFER = "451 4.3.0 Temporary lookup failure"

JUDGED_STATES = frozenset({"RCPT"})
LEARNING_STATES = frozenset({"RCPT", "END-OF-MESSAGE"})
DEFAULT_MAX_REQUEST = 65_536

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(ValueError):
    """Input that is not a policy request. SMTPD_POLICY_README: log, send nothing, disconnect."""


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One attribute block as Postfix sent it; values are raw (the recipient keeps its case)."""

    attributes: Mapping[str, str]

    def get(self, name: str) -> str:
        return self.attributes.get(name, "")

    @property
    def protocol_state(self) -> str:
        return self.get("protocol_state")

    @property
    def recipient(self) -> str:
        return self.get("recipient")

    @property
    def sender(self) -> str:
        return self.get("sender")

    @property
    def sasl_username(self) -> str:
        return self.get("sasl_username")

    @property
    def client_address(self) -> str:
        return self.get("client_address")


def parse_request(block: bytes) -> PolicyRequest:
    """Parse one block (lines without the terminating blank line)."""
    attributes: dict[str, str] = {}
    for raw in block.split(b"\n"):
        line = raw.removesuffix(b"\r")
        name, sep, value = line.partition(b"=")
        if not sep or not name:
            raise PolicyError("policy request line is not name=value")
        # Non-UTF-8 bytes (8-bit junk without SMTPUTF8) become U+FFFD: such an address then
        # matches no recipient instead of killing the connection.
        attributes[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    if not attributes:
        raise PolicyError("empty policy request")
    return PolicyRequest(attributes)


def is_judged(request: PolicyRequest) -> bool:
    """Only RCPT requests get a verdict; anything else (and a missing recipient) is DUNNO."""
    return request.protocol_state in JUDGED_STATES and bool(request.recipient)


def action_for(result: LookupResult) -> str:
    """Map a recipient verdict to an action; a domain that is not ours is someone else's call."""
    if result.verdict is Verdict.ACCEPT:
        return DUNNO
    if result.verdict is Verdict.REJECT:
        if result.reason is Reason.DOMAIN_NOT_ACCEPTED:
            return DUNNO
        if result.reason is Reason.MALFORMED:
            return REJECT_SYNTAX
        return REJECT_UNKNOWN
    reason = result.reason.value if result.reason else "unavailable"
    return f"{DEFER} (roster {reason})"


def format_reply(action: str) -> bytes:
    return b"action=" + action.replace("\n", " ").encode("utf-8") + b"\n\n"


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse trusted networks ("10.0.0.0/8", "::1"); host bits set are tolerated."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def is_trusted(client_address: str, networks: Iterable[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(client_address)
    except ValueError:  # "unknown" or empty
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def learnable_sender(request: PolicyRequest, trusted: Iterable[IPNetwork]) -> str | None:
    """The sender to learn, or None. Only mail Postfix authenticated (SASL) or that comes from a
    trusted network teaches anything: otherwise a spoofed sender would become a valid recipient.
    """
    sender = request.sender.strip()
    if not sender or request.protocol_state not in LEARNING_STATES:
        return None
    if request.sasl_username or is_trusted(request.client_address, trusted):
        return sender
    return None


class PolicyDecoder:
    """Splits a byte stream into attribute blocks, refusing a pending block over the cap."""

    __slots__ = ("_buffer", "_max_request")

    def __init__(self, *, max_request: int = DEFAULT_MAX_REQUEST) -> None:
        self._max_request = max_request
        self._buffer = b""

    def feed(self, data: bytes) -> list[PolicyRequest]:
        buf = self._buffer + data if self._buffer else data
        requests: list[PolicyRequest] = []
        pos = 0
        while True:
            if buf.startswith(b"\n", pos) or buf.startswith(b"\r\n", pos):
                raise PolicyError("empty policy request")
            end = buf.find(b"\n\n", pos)
            # Tolerate CRLF clients (telnet, hand-written probes) as well as Postfix's LF.
            crlf = buf.find(b"\n\r\n", pos, end if end >= 0 else len(buf))
            if crlf >= 0:
                block, pos = buf[pos:crlf], crlf + 3
            elif end >= 0:
                block, pos = buf[pos:end], end + 2
            else:
                break
            if len(block) > self._max_request:
                raise PolicyError(f"policy request longer than {self._max_request} bytes")
            requests.append(parse_request(block))
        self._buffer = buf[pos:]
        if len(self._buffer) > self._max_request:
            raise PolicyError(f"policy request longer than {self._max_request} bytes")
        return requests

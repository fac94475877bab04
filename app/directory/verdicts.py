"""The answer to "is this a valid recipient?", shared by HTTP, socketmap, tcp_table and policy.

Only a successful lookup in a ready mirror may produce REJECT; everything uncertain is TEMPFAIL,
because a tempfail makes mail wait in the sender's queue while a wrong reject bounces it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Verdict(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    TEMPFAIL = "tempfail"


class Reason(StrEnum):
    UNKNOWN_RECIPIENT = "unknown_recipient"
    DOMAIN_NOT_ACCEPTED = "domain_not_accepted"
    DISABLED = "disabled"
    NOT_READY = "not_ready"
    STALE = "stale"
    UNAVAILABLE = "unavailable"
    MALFORMED = "malformed"


# For the hot paths (socketmap, tcp_table, the index's `resolve`): reading an enum member as a
# class attribute costs ~0.15 µs on Python 3.11, a module global ~0.02 µs.
ACCEPT = Verdict.ACCEPT
REJECT = Verdict.REJECT
DISABLED = Reason.DISABLED

# (verdict, reason, primary address): all the mail protocols need from a lookup.
Resolved = tuple[Verdict, Reason | None, str | None]


class LookupResult(NamedTuple):
    """One verdict with the fields of the HTTP answer (docs/contracts.md §4).

    A NamedTuple, not a frozen dataclass: it is built on every lookup, and a frozen dataclass
    costs ~2.5 µs to construct against ~0.4 µs here."""

    address: str
    verdict: Verdict
    reason: Reason | None = None
    matched: str | None = None
    primary: str | None = None
    kind: str | None = None
    enabled: bool | None = None
    recipient_id: str | None = None
    tenant: str | None = None
    source: str | None = None
    detail: str | None = None

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.ACCEPT

    def as_dict(self) -> dict[str, object]:
        return {
            "address": self.address,
            "valid": self.valid,
            "verdict": self.verdict.value,
            "reason": self.reason.value if self.reason else None,
            "matched": self.matched,
            "primary": self.primary,
            "kind": self.kind,
            "enabled": self.enabled,
            "recipient_id": self.recipient_id,
            "tenant": self.tenant,
            "source": self.source,
        }

"""The in-memory lookup index and the verdict rules (DESIGN.md sections 3 and 4).

The hot path is `LookupIndex.lookup`: pure dictionary work, never a database query. The index is
filled and kept current by `app.directory.index_sync`; while it cannot vouch for a tenant, that
tenant's lookups are TEMPFAIL, never a reject from stale data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.directory.addresses import domain_of, normalize, normalize_domain, subaddress_base
from app.directory.verdicts import LookupResult, Reason, Verdict
from app.errors import Malformed


class TenantState:
    """What the index knows about one tenant's mirror: can it vouch for a reject?"""

    __slots__ = ("healthy", "id", "name", "ready", "stale_after")

    def __init__(self, tenant_id: str, name: str) -> None:
        self.id = tenant_id
        self.name = name
        self.ready = False
        self.stale_after: float | None = None  # epoch seconds; None = never stale
        self.healthy = True


class Entry:
    """One live recipient, shared by all of its address keys (keeps the index near 150 B/address)."""

    __slots__ = ("addresses", "enabled", "kind", "primary", "recipient_id", "source", "tenant")

    def __init__(
        self,
        recipient_id: str,
        tenant: TenantState,
        primary: str,
        kind: str,
        enabled: bool,
        source: str,
        addresses: tuple[str, ...],
    ) -> None:
        self.recipient_id = recipient_id
        self.tenant = tenant
        self.primary = primary
        self.kind = kind
        self.enabled = enabled
        self.source = source
        self.addresses = addresses


@dataclass(frozen=True, slots=True)
class LookupOptions:
    delimiter: str = "+"
    reject_disabled: bool = False


class LookupIndex:
    def __init__(
        self, options: LookupOptions | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.options = options or LookupOptions()
        self.clock = clock
        self.addresses: dict[str, Entry] = {}
        self.by_recipient: dict[str, Entry] = {}
        self.domains: dict[str, TenantState] = {}
        self.tenants: dict[str, TenantState] = {}
        self.loaded = False
        self.healthy = True
        self.last_seq = 0

    # -- the hot path -------------------------------------------------------------------------

    def lookup(self, raw: str) -> LookupResult:
        try:
            address = normalize(raw)
        except Malformed as exc:
            return LookupResult(raw, Verdict.REJECT, Reason.MALFORMED, detail=exc.message)
        if not self.loaded or not self.healthy:
            return _tempfail(raw, Reason.UNAVAILABLE, "the lookup index is not available")
        tenant = self.domains.get(domain_of(address))
        if tenant is None:
            return LookupResult(raw, Verdict.REJECT, Reason.DOMAIN_NOT_ACCEPTED)
        if not tenant.healthy:
            return _tempfail(raw, Reason.UNAVAILABLE, "the mirror cannot be read", tenant)
        matched = address
        entry = self.addresses.get(address)
        if entry is None:
            base = subaddress_base(address, self.options.delimiter)
            if base is not None:
                entry = self.addresses.get(base)
                matched = base
        if entry is not None and entry.tenant is tenant:
            if not entry.enabled and self.options.reject_disabled:
                return _answer(raw, Verdict.REJECT, Reason.DISABLED, matched, entry)
            return _answer(raw, Verdict.ACCEPT, None, matched, entry)
        if not tenant.ready:
            return _tempfail(raw, Reason.NOT_READY, "first full sync has not finished", tenant)
        if tenant.stale_after is not None and self.clock() > tenant.stale_after:
            return _tempfail(raw, Reason.STALE, "directory has not synced recently", tenant)
        return LookupResult(raw, Verdict.REJECT, Reason.UNKNOWN_RECIPIENT, tenant=tenant.name)

    def lookup_domain(self, raw: str) -> LookupResult:
        try:
            domain = normalize_domain(raw)
        except Malformed as exc:
            return LookupResult(raw, Verdict.REJECT, Reason.MALFORMED, detail=exc.message)
        if not self.loaded or not self.healthy:
            return _tempfail(raw, Reason.UNAVAILABLE, "the lookup index is not available")
        tenant = self.domains.get(domain)
        if tenant is None:
            return LookupResult(raw, Verdict.REJECT, Reason.DOMAIN_NOT_ACCEPTED)
        return LookupResult(raw, Verdict.ACCEPT, tenant=tenant.name)

    # -- maintenance, called by index_sync ----------------------------------------------------

    def put(self, entry: Entry) -> None:
        """Insert or replace a recipient; only addresses in its tenant's accepted domains count."""
        self.remove(entry.recipient_id)
        domains = self.domains
        kept = tuple(a for a in entry.addresses if domains.get(domain_of(a)) is entry.tenant)
        if not kept:
            return
        entry.addresses = kept
        self.by_recipient[entry.recipient_id] = entry
        for address in kept:
            self.addresses[address] = entry

    def remove(self, recipient_id: str) -> None:
        old = self.by_recipient.pop(recipient_id, None)
        if old is None:
            return
        for address in old.addresses:
            if self.addresses.get(address) is old:
                del self.addresses[address]


def _answer(
    raw: str, verdict: Verdict, reason: Reason | None, matched: str, entry: Entry
) -> LookupResult:
    return LookupResult(
        raw,
        verdict,
        reason,
        matched=matched,
        primary=entry.primary,
        kind=entry.kind,
        enabled=entry.enabled,
        recipient_id=entry.recipient_id,
        tenant=entry.tenant.name,
        source=entry.source,
    )


def _tempfail(
    raw: str, reason: Reason, detail: str, tenant: TenantState | None = None
) -> LookupResult:
    return LookupResult(
        raw, Verdict.TEMPFAIL, reason, tenant=tenant.name if tenant else None, detail=detail
    )

"""The in-memory lookup index and the verdict rules (docs/contracts.md §3, §4).

The hot path is `LookupIndex.lookup`: pure dictionary work, never a database query. The index is
filled and kept current by `app.directory.index_sync`; while it cannot vouch for a tenant, that
tenant's lookups are TEMPFAIL, never a reject from stale data.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from app.directory.addresses import (
    MAX_ADDRESS_OCTETS,
    MAX_LOCAL_OCTETS,
    normalize,
    normalize_domain,
    subaddress_base,
)
from app.directory.verdicts import (
    ACCEPT,
    DISABLED,
    REJECT,
    LookupResult,
    Reason,
    Resolved,
    Verdict,
)
from app.errors import Malformed


class TenantState:
    """What the index knows about one tenant's mirror: can it vouch for a reject?"""

    __slots__ = ("healthy", "id", "name", "ready", "reject_disabled", "stale_after")

    def __init__(self, tenant_id: str, name: str) -> None:
        self.id = tenant_id
        self.name = name
        self.ready = False
        self.stale_after: float | None = None  # epoch seconds; None = never stale
        self.healthy = True
        self.reject_disabled: bool | None = None  # the tenant's policy; None = the global option

    def rejects_disabled(self, default: bool) -> bool:
        return default if self.reject_disabled is None else self.reject_disabled


class Profile(NamedTuple):
    kind: str
    source: str
    enabled: bool


# Shared instances: a handful of (kind, source, enabled) combinations serve every recipient.
_PROFILES: dict[tuple[str, str, bool], Profile] = {}
_DOMAIN_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared(table: dict[Any, Any], value: Any) -> Any:
    return table.setdefault(value, value) if len(table) < 100_000 else value


class Entry:
    """One live recipient, shared by all of its address keys.

    Kept small because there is one per recipient (the index budget is 200 B per address): the
    id is stored as 16 UUID bytes, the local parts as a tuple, their domains as a tuple shared by
    every recipient with the same domains, kind/source/enabled as a shared Profile, and the
    primary as an index.
    """

    __slots__ = ("_primary", "domains", "locals", "profile", "rid", "tenant")

    def __init__(
        self,
        recipient_id: str,
        tenant: TenantState,
        primary: str,
        kind: str,
        enabled: bool,
        source: str,
        addresses: Iterable[str],
    ) -> None:
        locals_: list[str] = []
        domains: list[str] = []
        primary_at = 0
        for position, address in enumerate(addresses):
            local, _, domain = address.rpartition("@")
            locals_.append(local)
            domains.append(sys.intern(domain))
            if address == primary:
                primary_at = position
        self.rid = rid_key(recipient_id)
        self.tenant = tenant
        self._primary = primary_at
        self.profile: Profile = _shared(
            _PROFILES, Profile(sys.intern(kind), sys.intern(source), enabled)
        )
        self.locals = tuple(locals_)
        self.domains: tuple[str, ...] = _shared(_DOMAIN_SETS, tuple(domains))

    @property
    def recipient_id(self) -> str:
        rid = self.rid
        if isinstance(rid, bytes):  # formatted by hand: uuid.UUID() costs ~3 µs per answer
            h = rid.hex()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return rid

    @property
    def primary(self) -> str:
        return f"{self.locals[self._primary]}@{self.domains[self._primary]}"

    @property
    def kind(self) -> str:
        return self.profile.kind

    @property
    def source(self) -> str:
        return self.profile.source

    @property
    def enabled(self) -> bool:
        return self.profile.enabled

    def pairs(self) -> Iterator[tuple[str, str]]:
        return zip(self.locals, self.domains, strict=True)


def rid_key(recipient_id: str) -> bytes | str:
    """Recipient ids are UUID strings (85 B); as dictionary keys they are kept as 16 bytes."""
    if len(recipient_id) == 36 and recipient_id.count("-") == 4:
        try:
            return bytes.fromhex(recipient_id.replace("-", ""))
        except ValueError:
            pass
    return recipient_id


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
        # domain -> local part -> recipient, for accepted domains only
        self.tables: dict[str, dict[str, Entry]] = {}
        self.by_recipient: dict[bytes | str, Entry] = {}
        self.domains: dict[str, TenantState] = {}
        self.tenants: dict[str, TenantState] = {}
        self.loaded = False
        self.healthy = True
        self.last_seq = 0
        # Domains normalize_domain() keeps as is (a pure function of the name), for `resolve`.
        self._canonical_domains: set[str] = set()

    # -- the hot path -------------------------------------------------------------------------

    def lookup(self, raw: str) -> LookupResult:
        return result_of(raw, self.find(raw))

    def resolve(self, raw: str) -> Resolved:
        """(verdict, reason, primary address): all the mail protocols need, without building
        the full answer (a socketmap lookup has a ~15 µs budget in all, ~10 of them syscalls).

        Keys already in canonical form (Postfix lower-cases socketmap and tcp_table keys) skip
        normalize(); everything else takes `find`, so both paths give the same verdicts."""
        local, _, domain = raw.rpartition("@")
        tenant = self.domains.get(domain)
        # normalize(raw) == raw when the key is printable ASCII without spaces or capitals (so
        # strip() and lower() change nothing), within the length limits, and its domain is one
        # normalize_domain() keeps as is. (`raw.lower() != raw` is ~3x cheaper than islower().)
        if (
            tenant is None
            or not raw.isascii()
            or raw.lower() != raw
            or not raw.isprintable()
            or " " in raw
            or not 0 < len(local) <= MAX_LOCAL_OCTETS
            or len(raw) > MAX_ADDRESS_OCTETS
            or not (domain in self._canonical_domains or self._learn_domain(domain))
        ):
            verdict, reason, _, entry, _, _ = self.find(raw)
            if entry is None:
                return verdict, reason, None
            at = entry._primary
            return verdict, reason, f"{entry.locals[at]}@{entry.domains[at]}"
        # From here on these are `find`'s steps, in the same order, on the same string.
        if not self.loaded or not self.healthy or not tenant.healthy:
            return _RESOLVED_UNAVAILABLE
        table = self.tables[domain]
        entry = table.get(local)
        if entry is None:
            base = subaddress_base(raw, self.options.delimiter)
            if base is not None:
                entry = table.get(base.rpartition("@")[0])
        if entry is not None and entry.tenant is tenant:
            at = entry._primary
            primary = f"{entry.locals[at]}@{entry.domains[at]}"
            if not entry.profile.enabled and tenant.rejects_disabled(self.options.reject_disabled):
                return REJECT, DISABLED, primary
            return ACCEPT, None, primary
        if not tenant.ready:
            return _RESOLVED_NOT_READY
        if tenant.stale_after is not None and self.clock() > tenant.stale_after:
            return _RESOLVED_STALE
        return _RESOLVED_UNKNOWN

    def _learn_domain(self, domain: str) -> bool:
        """Is this accepted domain one normalize_domain() keeps as is? Remembered when it is;
        only accepted domains get here, so the set stays as small as their list."""
        try:
            canonical = normalize_domain(domain) == domain
        except Malformed:
            return False
        if canonical:
            self._canonical_domains.add(domain)
        return canonical

    def find(self, raw: str) -> Found:
        """The verdict rules: (verdict, reason, matched, entry, tenant, detail)."""
        try:
            address = normalize(raw)
        except Malformed as exc:
            return Verdict.REJECT, Reason.MALFORMED, None, None, None, exc.message
        if not self.loaded or not self.healthy:
            return _TEMPFAIL_UNAVAILABLE
        local, _, domain = address.rpartition("@")
        tenant = self.domains.get(domain)
        if tenant is None:
            return self._unknown_domain()
        if not tenant.healthy:
            return Verdict.TEMPFAIL, Reason.UNAVAILABLE, None, None, tenant, _UNREADABLE
        table = self.tables[domain]
        matched = address
        entry = table.get(local)
        if entry is None:
            base = subaddress_base(address, self.options.delimiter)
            if base is not None:
                entry = table.get(base.rpartition("@")[0])
                matched = base
        if entry is not None and entry.tenant is tenant:
            if not entry.profile.enabled and tenant.rejects_disabled(self.options.reject_disabled):
                return Verdict.REJECT, Reason.DISABLED, matched, entry, tenant, None
            return Verdict.ACCEPT, None, matched, entry, tenant, None
        if not tenant.ready:
            return Verdict.TEMPFAIL, Reason.NOT_READY, None, None, tenant, _NOT_READY
        if tenant.stale_after is not None and self.clock() > tenant.stale_after:
            return Verdict.TEMPFAIL, Reason.STALE, None, None, tenant, _STALE
        return Verdict.REJECT, Reason.UNKNOWN_RECIPIENT, None, None, tenant, None

    def lookup_domain(self, raw: str) -> LookupResult:
        try:
            domain = normalize_domain(raw)
        except Malformed as exc:
            return LookupResult(raw, Verdict.REJECT, Reason.MALFORMED, detail=exc.message)
        if not self.loaded or not self.healthy:
            return _tempfail(raw, Reason.UNAVAILABLE, "the lookup index is not available")
        tenant = self.domains.get(domain)
        if tenant is None:
            verdict, reason, _, _, _, detail = self._unknown_domain()
            return LookupResult(raw, verdict, reason, detail=detail)
        return LookupResult(raw, Verdict.ACCEPT, tenant=tenant.name)

    def _unknown_domain(self) -> Found:
        # A directory's domains arrive with its first sync (Graph /domains): until every tenant
        # has one, an unknown domain may be one of theirs, so "not ours" would be a guess.
        if not all(tenant.ready for tenant in self.tenants.values()):
            return Verdict.TEMPFAIL, Reason.NOT_READY, None, None, None, _FIRST_SYNC
        return Verdict.REJECT, Reason.DOMAIN_NOT_ACCEPTED, None, None, None, None

    # -- maintenance, called by index_sync ----------------------------------------------------

    def put(self, entry: Entry) -> None:
        """Insert or replace a recipient; only addresses in its tenant's accepted domains count."""
        if entry.rid in self.by_recipient:
            self.remove(entry.rid)
        kept = False
        domains, tables, tenant = self.domains, self.tables, entry.tenant
        for local, domain in zip(entry.locals, entry.domains, strict=True):
            if domains.get(domain) is tenant:
                tables[domain][local] = entry
                kept = True
        if kept:
            self.by_recipient[entry.rid] = entry

    def remove(self, rid: bytes | str) -> None:
        old = self.by_recipient.pop(rid, None)
        if old is None:
            return
        for local, domain in old.pairs():
            table = self.tables.get(domain)
            if table is not None and table.get(local) is old:
                del table[local]

    def set_domains(self, domains: dict[str, TenantState]) -> None:
        self.domains = domains
        self.tables = {name: {} for name in domains}

    def address_count(self) -> int:
        return sum(len(table) for table in self.tables.values())


_NOT_READY = "first full sync has not finished"
_FIRST_SYNC = "a directory's first sync has not finished"
_STALE = "directory has not synced recently"
_UNREADABLE = "the mirror cannot be read"
_TEMPFAIL_UNAVAILABLE = (
    Verdict.TEMPFAIL,
    Reason.UNAVAILABLE,
    None,
    None,
    None,
    "the lookup index is not available",
)


Found = tuple[Verdict, Reason | None, str | None, Entry | None, TenantState | None, str | None]

# `resolve`'s constant answers, prebuilt.
_RESOLVED_UNAVAILABLE: Resolved = (Verdict.TEMPFAIL, Reason.UNAVAILABLE, None)
_RESOLVED_NOT_READY: Resolved = (Verdict.TEMPFAIL, Reason.NOT_READY, None)
_RESOLVED_STALE: Resolved = (Verdict.TEMPFAIL, Reason.STALE, None)
_RESOLVED_UNKNOWN: Resolved = (Verdict.REJECT, Reason.UNKNOWN_RECIPIENT, None)


def result_of(raw: str, found: Found) -> LookupResult:
    """The full answer for `find`'s (verdict, reason, matched, entry, tenant, detail)."""
    verdict, reason, matched, entry, tenant, detail = found
    if entry is not None:
        return _answer(raw, verdict, reason, matched or raw, entry)
    return LookupResult(raw, verdict, reason, tenant=tenant.name if tenant else None, detail=detail)


def _answer(
    raw: str, verdict: Verdict, reason: Reason | None, matched: str, entry: Entry
) -> LookupResult:
    # Positional and without the property hops: this runs for every accepted lookup.
    profile = entry.profile
    at = entry._primary
    return LookupResult(
        raw,
        verdict,
        reason,
        matched,
        f"{entry.locals[at]}@{entry.domains[at]}",
        profile.kind,
        profile.enabled,
        entry.recipient_id,
        entry.tenant.name,
        profile.source,
    )


def _tempfail(
    raw: str, reason: Reason, detail: str, tenant: TenantState | None = None
) -> LookupResult:
    return LookupResult(
        raw, Verdict.TEMPFAIL, reason, tenant=tenant.name if tenant else None, detail=detail
    )

"""A dict-backed Resolver for protocol tests; the real index lives in app.directory."""

from __future__ import annotations

from collections.abc import Mapping

from app.directory.verdicts import LookupResult, Reason, Verdict

ADDRESSES = {
    "alice@example.com": "alice@example.com",
    "ali@example.com": "alice@example.com",  # alias
    "bob@contoso.com": "bob@contoso.com",
}
DOMAINS = {"example.com": "acme", "contoso.com": "contoso", "slow.example": "slowco"}
NOT_READY_DOMAINS = frozenset({"slow.example"})  # accepted, but the tenant's first sync runs
RAISING_ADDRESS = "boom@example.com"


class DictResolver:
    """Folds case, strips `+tag`, and answers like the real index: junk is MALFORMED, a domain
    that is not ours is domain_not_accepted, an address of a not-ready tenant is TEMPFAIL."""

    def __init__(
        self,
        addresses: Mapping[str, str] = ADDRESSES,
        domains: Mapping[str, str] = DOMAINS,
        not_ready_domains: frozenset[str] = NOT_READY_DOMAINS,
    ) -> None:
        self.addresses = dict(addresses)
        self.domains = dict(domains)
        self.not_ready_domains = not_ready_domains
        self.calls: list[str] = []

    def lookup(self, address: str) -> LookupResult:
        self.calls.append(address)
        folded = address.strip().lower()
        if folded == RAISING_ADDRESS:
            raise RuntimeError("index exploded")
        local, at, domain = folded.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in folded):
            return LookupResult(address, Verdict.REJECT, Reason.MALFORMED)
        domain_result = self.lookup_domain(domain)
        if not domain_result.valid:
            return LookupResult(address, domain_result.verdict, domain_result.reason)
        if domain in self.not_ready_domains:
            return LookupResult(address, Verdict.TEMPFAIL, Reason.NOT_READY)
        for candidate in (folded, f"{local.split('+', 1)[0]}@{domain}"):
            if candidate in self.addresses:
                return LookupResult(
                    address,
                    Verdict.ACCEPT,
                    matched=candidate,
                    primary=self.addresses[candidate],
                    tenant=domain_result.tenant,
                )
        return LookupResult(address, Verdict.REJECT, Reason.UNKNOWN_RECIPIENT)

    def lookup_domain(self, domain: str) -> LookupResult:
        folded = domain.strip().lower()
        if folded in self.domains:
            return LookupResult(domain, Verdict.ACCEPT, tenant=self.domains[folded])
        return LookupResult(domain, Verdict.REJECT, Reason.DOMAIN_NOT_ACCEPTED)

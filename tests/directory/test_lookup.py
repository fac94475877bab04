"""Verdict rules on the in-memory index, without a database."""

from __future__ import annotations

import pytest

from app.directory.lookup import Entry, LookupIndex, LookupOptions, TenantState, rid_key
from app.directory.verdicts import Reason, Verdict


def make_index(
    *, delimiter: str = "+", reject_disabled: bool = False, now: float = 1000.0
) -> tuple[LookupIndex, TenantState]:
    index = LookupIndex(LookupOptions(delimiter, reject_disabled), clock=lambda: now)
    tenant = TenantState("t1", "contoso")
    tenant.ready = True
    index.tenants = {"t1": tenant}
    index.set_domains({"contoso.com": tenant})
    index.loaded = True
    index.put(
        Entry(
            "00000000-0000-0000-0000-000000000001",
            tenant,
            "alice.smith@contoso.com",
            "user",
            True,
            "graph",
            ("alice.smith@contoso.com", "alice@contoso.com", "alice@elsewhere.org"),
        )
    )
    index.put(
        Entry(
            "00000000-0000-0000-0000-000000000002",
            tenant,
            "shared@contoso.com",
            "shared_mailbox",
            False,
            "graph",
            ("shared@contoso.com",),
        )
    )
    return index, tenant


def test_alias_with_subaddress_accepts_with_primary() -> None:
    index, _ = make_index()
    result = index.lookup("Alice+News@Contoso.com")
    assert result.verdict is Verdict.ACCEPT
    assert (result.matched, result.primary, result.tenant) == (
        "alice@contoso.com",
        "alice.smith@contoso.com",
        "contoso",
    )


def test_subaddressing_can_be_disabled() -> None:
    index, _ = make_index(delimiter="")
    assert index.lookup("alice+news@contoso.com").reason is Reason.UNKNOWN_RECIPIENT


def test_addresses_outside_accepted_domains_do_not_count() -> None:
    index, _ = make_index()
    assert index.lookup("alice@elsewhere.org").reason is Reason.DOMAIN_NOT_ACCEPTED


def test_disabled_mailbox_is_accepted_unless_configured() -> None:
    index, _ = make_index()
    result = index.lookup("shared@contoso.com")
    assert (result.verdict, result.enabled) == (Verdict.ACCEPT, False)
    index, _ = make_index(reject_disabled=True)
    assert index.lookup("shared@contoso.com").reason is Reason.DISABLED


def test_unknown_address_is_rejected_only_when_ready_and_fresh() -> None:
    index, tenant = make_index()
    assert index.lookup("nobody@contoso.com").verdict is Verdict.REJECT
    tenant.ready = False
    result = index.lookup("nobody@contoso.com")
    assert (result.verdict, result.reason) == (Verdict.TEMPFAIL, Reason.NOT_READY)
    # Known addresses are still accepted during a first sync: accepting them is certain.
    assert index.lookup("alice@contoso.com").verdict is Verdict.ACCEPT
    tenant.ready, tenant.stale_after = True, 999.0
    assert index.lookup("nobody@contoso.com").reason is Reason.STALE


@pytest.mark.parametrize("healthy_index", [True, False])
def test_unreadable_mirror_defers_everything(healthy_index: bool) -> None:
    index, tenant = make_index()
    index.healthy = healthy_index
    tenant.healthy = False
    for address in ("alice@contoso.com", "nobody@contoso.com"):
        result = index.lookup(address)
        assert (result.verdict, result.reason) == (Verdict.TEMPFAIL, Reason.UNAVAILABLE)


def test_index_not_loaded_defers() -> None:
    index = LookupIndex()
    assert index.lookup("a@b.com").verdict is Verdict.TEMPFAIL
    assert index.lookup_domain("b.com").verdict is Verdict.TEMPFAIL


def test_malformed_is_a_reject_with_reason() -> None:
    index, _ = make_index()
    result = index.lookup("not an address")
    assert (result.verdict, result.reason) == (Verdict.REJECT, Reason.MALFORMED)
    assert result.detail


def test_moving_an_address_between_recipients_keeps_the_new_owner() -> None:
    index, tenant = make_index()
    index.put(
        Entry("r3", tenant, "alice@contoso.com", "user", True, "manual", ("alice@contoso.com",))
    )
    index.put(
        Entry(
            "00000000-0000-0000-0000-000000000001",
            tenant,
            "alice.smith@contoso.com",
            "user",
            True,
            "graph",
            ("alice.smith@contoso.com",),
        )
    )
    assert index.lookup("alice@contoso.com").recipient_id == "r3"
    index.remove(rid_key("00000000-0000-0000-0000-000000000001"))
    assert index.lookup("alice@contoso.com").recipient_id == "r3"
    assert index.lookup("alice.smith@contoso.com").verdict is Verdict.REJECT


def test_lookup_domain_names_the_tenant() -> None:
    index, _ = make_index()
    assert index.lookup_domain("CONTOSO.com").tenant == "contoso"
    assert index.lookup_domain("other.org").reason is Reason.DOMAIN_NOT_ACCEPTED


def test_unknown_domain_defers_while_a_first_sync_is_running() -> None:
    index, tenant = make_index()
    tenant.ready = False
    result = index.lookup("someone@maybe-theirs.example")
    assert (result.verdict, result.reason) == (Verdict.TEMPFAIL, Reason.NOT_READY)
    assert index.lookup_domain("maybe-theirs.example").verdict is Verdict.TEMPFAIL
    tenant.ready = True
    assert index.lookup("someone@maybe-theirs.example").reason is Reason.DOMAIN_NOT_ACCEPTED


def test_resolve_answers_verdict_reason_and_primary() -> None:
    index, tenant = make_index(reject_disabled=True)
    assert index.resolve("alice+news@contoso.com") == (
        Verdict.ACCEPT,
        None,
        "alice.smith@contoso.com",
    )
    assert index.resolve("Alice@Contoso.com") == (Verdict.ACCEPT, None, "alice.smith@contoso.com")
    assert index.resolve("shared@contoso.com") == (
        Verdict.REJECT,
        Reason.DISABLED,
        "shared@contoso.com",
    )
    assert index.resolve("nobody@contoso.com") == (Verdict.REJECT, Reason.UNKNOWN_RECIPIENT, None)
    assert index.resolve("x@elsewhere.org") == (Verdict.REJECT, Reason.DOMAIN_NOT_ACCEPTED, None)
    assert index.resolve("no-at-sign") == (Verdict.REJECT, Reason.MALFORMED, None)
    tenant.stale_after = 999.0
    assert index.resolve("nobody@contoso.com") == (Verdict.TEMPFAIL, Reason.STALE, None)


def test_resolve_remembers_only_domains_normalization_keeps() -> None:
    index, tenant = make_index()
    index.set_domains({"contoso.com": tenant, "bad..example": tenant})
    index.resolve("a@contoso.com")
    index.resolve("a@bad..example")
    assert index._canonical_domains == {"contoso.com"}
    assert index.resolve("a@bad..example") == (Verdict.REJECT, Reason.MALFORMED, None)

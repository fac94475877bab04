"""The lean `resolve` path the servers use with the real index answers byte for byte like the
full `lookup` path, in every state a tenant can be in, for canonical keys (the fast path) and
everything else (which falls back to `find`)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.directory.addresses import normalize
from app.directory.lookup import Entry, LookupIndex, LookupOptions, TenantState
from app.errors import Malformed
from app.mailproto import netstring, socketmap, tcp_table

LONG_DOMAIN = ".".join(["d" * 60] * 3) + ".example"  # 190 octets, accepted
ADDRESSES = [
    "alice@contoso.com",
    "ALICE+tag@Contoso.com",
    "alice+tag@contoso.com",
    "alice+@contoso.com",
    "alice++x@contoso.com",
    "+alice@contoso.com",
    "alice-tag@contoso.com",
    "alice-x+y@contoso.com",
    "Alice@contoso.com",
    "alice@CONTOSO.COM",
    "alice@contoso.com.",
    " alice@contoso.com",
    "alice@contoso.com\n",
    "al\tice@contoso.com",
    "ali\x00ce@contoso.com",
    "ali ce@contoso.com",
    "ali\x7fce@contoso.com",
    "al@contoso.com",
    "shared@contoso.com",
    "nobody@contoso.com",
    "bücher@contoso.com",
    "x@bücher.example",
    "x@xn--bcher-kva.example",
    "x@other.org",
    "x@Other.org",
    "x@odd..domain",
    "x@-bad.domain",
    "a" * 64 + "@contoso.com",
    "a" * 65 + "@contoso.com",
    "a" * 63 + "@" + LONG_DOMAIN,  # 254 octets: the limit
    "a" * 64 + "@" + LONG_DOMAIN,  # 255 octets: too long
    "b@contoso.com",  # owned by another tenant's entry (see make_index)
    "not an address",
    "",
    "@contoso.com",
    "alice@",
    "a@b@c",
    "a@b@contoso.com",
    "x@[1.2.3.4]",
    "x@contoso.com]",
    "1234@5678",
    "1@2.3",
]


def make_index(
    *,
    ready: bool = True,
    healthy: bool = True,
    reject_disabled: bool = False,
    delimiter: str = "+",
    loaded: bool = True,
    index_healthy: bool = True,
    stale: bool = False,
) -> LookupIndex:
    index = LookupIndex(LookupOptions(delimiter, reject_disabled), clock=lambda: 1000.0)
    tenant = TenantState("t", "contoso")
    tenant.ready, tenant.healthy = ready, healthy
    tenant.stale_after = 999.0 if stale else None
    other = TenantState("o", "odd")
    other.ready = True
    index.tenants = {"t": tenant, "o": other}
    # A domain normalize_domain() would refuse, as a database written by older code might hold.
    index.set_domains(
        {"contoso.com": tenant, LONG_DOMAIN: tenant, "xn--bcher-kva.example": tenant,
         "odd..domain": other, "-bad.domain": other}
    )  # fmt: skip
    index.loaded, index.healthy = loaded, index_healthy
    index.put(
        Entry(
            "00000000-0000-0000-0000-00000000000a",
            tenant,
            "alice@contoso.com",
            "user",
            True,
            "graph",
            ("alice@contoso.com", "al@contoso.com", "x@xn--bcher-kva.example"),
        )
    )
    index.put(
        Entry(
            "00000000-0000-0000-0000-00000000000b",
            tenant,
            "shared@contoso.com",
            "shared_mailbox",
            False,
            "graph",
            ("shared@contoso.com", "a" * 64 + "@contoso.com", "a" * 63 + "@" + LONG_DOMAIN),
        )
    )
    index.put(Entry("c", other, "x@odd..domain", "user", True, "manual", ("x@odd..domain",)))
    # An entry in a table of a domain its tenant does not own: only `entry.tenant is tenant`
    # keeps it from answering (a state a domain move can leave behind).
    index.tables["contoso.com"]["b"] = Entry(
        "d", other, "b@contoso.com", "user", True, "manual", ("b@contoso.com",)
    )
    return index


def assert_same_replies(index: LookupIndex, address: str) -> None:
    full = index.lookup(address)
    lean = index.resolve(address)
    for map_name in (socketmap.SocketmapMap.RECIPIENTS, socketmap.SocketmapMap.PRIMARY):
        expected = socketmap.format_reply(full, map_name)
        assert socketmap.reply(*lean) == expected, address
        assert netstring.encode(socketmap.payload(*lean)) == expected, address
    assert tcp_table.reply(*lean) == tcp_table.format_reply(full), address


@pytest.mark.parametrize("ready", [True, False])
@pytest.mark.parametrize("healthy", [True, False])
@pytest.mark.parametrize("reject_disabled", [True, False])
@pytest.mark.parametrize("delimiter", ["+", "", "+-"])
def test_resolve_and_lookup_give_the_same_replies(
    ready: bool, healthy: bool, reject_disabled: bool, delimiter: str
) -> None:
    index = make_index(
        ready=ready, healthy=healthy, reject_disabled=reject_disabled, delimiter=delimiter
    )
    for address in ADDRESSES:
        assert_same_replies(index, address)


@pytest.mark.parametrize(
    "state",
    [{"loaded": False}, {"index_healthy": False}, {"stale": True}, {"ready": False}],
    ids=["not-loaded", "index-unhealthy", "stale", "first-sync-running"],
)
def test_resolve_defers_like_lookup(state: dict[str, bool]) -> None:
    index = make_index(**state)
    for address in ADDRESSES:
        assert_same_replies(index, address)
    assert index.resolve("nobody@contoso.com")[0] == "tempfail"


ALPHABET = st.sampled_from([*"aAbz09.-_+@ %\t\x00\x7fü[]", "contoso.com", "al", "odd..domain"])


@settings(max_examples=500, deadline=None)
@given(st.lists(ALPHABET, max_size=12).map("".join))
def test_resolve_agrees_with_lookup_for_any_key(address: str) -> None:
    for index in (make_index(), make_index(ready=False, delimiter="+-", reject_disabled=True)):
        assert_same_replies(index, address)


@settings(max_examples=500, deadline=None)
@given(st.lists(ALPHABET, max_size=12).map("".join))
def test_fast_path_only_takes_keys_normalize_keeps(address: str) -> None:
    # The fast path runs on `raw` as is; with `find` unusable it answers only when it can.
    index = make_index()
    index.find = None  # type: ignore[assignment,method-assign]
    try:
        index.resolve(address)
    except TypeError:
        return  # fell back to `find`
    try:
        assert normalize(address) == address
    except Malformed:
        pytest.fail(f"fast path took a malformed key: {address!r}")


def test_lower_case_keys_skip_normalization() -> None:
    """What Postfix sends must not pay for normalize(): guards the optimisation itself."""
    index = make_index()
    index.find = None  # type: ignore[assignment,method-assign]
    assert index.resolve("alice@contoso.com") == ("accept", None, "alice@contoso.com")
    assert index.resolve("alice+news@contoso.com") == ("accept", None, "alice@contoso.com")
    assert index.resolve("nobody@contoso.com") == ("reject", "unknown_recipient", None)

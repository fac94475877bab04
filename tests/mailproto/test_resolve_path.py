"""The lean `resolve` path the servers use with the real index answers byte for byte like the
full `lookup` path, in every state a tenant can be in."""

from __future__ import annotations

import pytest

from app.directory.lookup import Entry, LookupIndex, LookupOptions, TenantState
from app.mailproto import netstring, socketmap, tcp_table

ADDRESSES = [
    "alice@contoso.com",
    "ALICE+tag@Contoso.com",
    "al@contoso.com",
    "shared@contoso.com",
    "nobody@contoso.com",
    "x@other.org",
    "not an address",
    "",
    "a@b@c",
    "x@[1.2.3.4]",
]


def make_index(*, ready: bool, healthy: bool, reject_disabled: bool) -> LookupIndex:
    index = LookupIndex(LookupOptions("+", reject_disabled))
    tenant = TenantState("t", "contoso")
    tenant.ready, tenant.healthy = ready, healthy
    index.tenants = {"t": tenant}
    index.set_domains({"contoso.com": tenant})
    index.loaded = True
    index.put(
        Entry(
            "00000000-0000-0000-0000-00000000000a",
            tenant,
            "alice@contoso.com",
            "user",
            True,
            "graph",
            ("alice@contoso.com", "al@contoso.com"),
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
            ("shared@contoso.com",),
        )
    )
    return index


@pytest.mark.parametrize("ready", [True, False])
@pytest.mark.parametrize("healthy", [True, False])
@pytest.mark.parametrize("reject_disabled", [True, False])
def test_resolve_and_lookup_give_the_same_replies(
    ready: bool, healthy: bool, reject_disabled: bool
) -> None:
    index = make_index(ready=ready, healthy=healthy, reject_disabled=reject_disabled)
    for address in ADDRESSES:
        full = index.lookup(address)
        lean = index.resolve(address)
        for map_name in (socketmap.SocketmapMap.RECIPIENTS, socketmap.SocketmapMap.PRIMARY):
            assert socketmap.format_reply(full, map_name) == netstring.encode(
                socketmap.payload(*lean)
            ), address
        assert tcp_table.format_reply(full) == tcp_table.reply(*lean), address

"""The seeded tenant generator: realistic shapes, determinism, and scale without quadratic costs."""

from __future__ import annotations

from app.simulator.graph import SimulatorState, TenantSpec
from app.simulator.graph.delta import DeltaEngine


def test_same_seed_same_tenant() -> None:
    first = SimulatorState.seeded(TenantSpec(users=200), seed=5).expected_accepted()
    second = SimulatorState.seeded(TenantSpec(users=200), seed=5).expected_accepted()
    other = SimulatorState.seeded(TenantSpec(users=200), seed=6).expected_accepted()
    assert first == second
    assert first != other


def test_tenant_has_every_shape_a_mirror_must_handle() -> None:
    state = SimulatorState.seeded(TenantSpec(users=400, groups=60, contacts=40), seed=1)
    users = list(state.store.live["users"].values())
    groups = list(state.store.live["groups"].values())
    proxies = [p for u in users for p in u["proxyAddresses"]]
    assert any(u["userType"] == "Guest" and "#EXT#" in u["userPrincipalName"] for u in users)
    assert any(not u["mail"] and not u["proxyAddresses"] for u in users)  # UPN-only
    assert any(not u["accountEnabled"] and u["mail"] for u in users)  # shared mailboxes
    assert any(p.startswith("SIP:") for p in proxies)
    assert any(p.startswith("X500:") for p in proxies)
    assert any(p.endswith("@contoso-legacy.org") for p in proxies)  # unverified domain
    assert any(u["mail"] and u["mail"] != u["mail"].lower() for u in users)  # mixed case
    assert any("Unified" in g["groupTypes"] for g in groups)
    assert any(not g["mailEnabled"] and g["securityEnabled"] for g in groups)
    assert any(g["mailEnabled"] and g["securityEnabled"] and not g["groupTypes"] for g in groups)
    assert any(
        g["mailEnabled"] and not g["securityEnabled"] and not g["groupTypes"] for g in groups
    )
    group_ids = set(state.store.live["groups"])
    assert any(set(m) & group_ids for m in state.store.members.values())  # nesting
    assert any(set(m) & set(state.store.live["contacts"]) for m in state.store.members.values())


def test_expected_map_excludes_what_is_never_deliverable() -> None:
    state = SimulatorState.seeded(TenantSpec(users=400), seed=2)
    expected = state.expected_accepted()
    accepted = state.store.accepted_domains()
    assert "contoso-legacy.org" not in accepted
    assert "sso.contoso.com" not in accepted
    assert all(a.rpartition("@")[2] in accepted for a in expected)
    assert not any("#ext#" in a for a in expected)
    upns_only = {
        u["userPrincipalName"].lower()
        for u in state.store.live["users"].values()
        if not u["mail"] and u["userType"] == "Member"
    }
    assert upns_only
    assert not upns_only & set(expected)


def test_a_large_tenant_is_generated_and_paged_completely_in_full_and_incremental_rounds() -> None:
    """Every object and membership reaches the last page; 1,000 changes make one incremental
    round. Generation and paging speed at 100,000 users is measured by bench/graph_bench.py."""
    state = SimulatorState.seeded(
        TenantSpec(users=20_000, groups=2_000, contacts=200, memberships=200_000),
        seed=3,
        page_size=200,
        members_page_size=500,
    )
    snapshot = state.snapshot()
    assert (snapshot["users"], snapshot["groups"]) == (20_000, 2_000)
    assert snapshot["memberships"] >= 198_000

    engine: DeltaEngine = state.delta
    links = {}
    for resource, select in (
        ("users", ["mail", "proxyAddresses"]),
        ("groups", ["mail", "members"]),
    ):
        page = engine.start(resource, select, None)
        ids: set[str] = set()
        members = pages = 0
        while True:
            pages += 1
            ids.update(v["id"] for v in page.values)
            members += sum(len(v.get("members@delta", ())) for v in page.values)
            if page.next_token is None:
                break
            page = engine.resume(resource, page.next_token)
        assert pages > 10  # crossed many pages, not one big answer
        if resource == "users":
            assert ids == set(state.store.live["users"])
        else:
            assert ids == set(state.store.live["groups"])
            assert members == snapshot["memberships"]
        links[resource] = page.delta_token

    # An incremental round of 1,000 changes, deletions included, returns exactly those objects.
    user_ids = list(state.store.live["users"])[:1000]
    for index, user_id in enumerate(user_ids):
        if index % 2:
            state.delete(user_id)
        else:
            state.add_alias(user_id, f"moved{index}@contoso.com")  # a selected property
    page = engine.start("users", None, links["users"])
    values = list(page.values)
    while page.next_token is not None:
        page = engine.resume("users", page.next_token)
        values.extend(page.values)
    assert {v["id"] for v in values} == set(user_ids)
    removed = {v["id"] for v in values if "@removed" in v}
    assert removed == set(user_ids[1::2])

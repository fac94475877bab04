"""GraphClient on the real msgraph-sdk and azure-identity, over HTTPS to the simulator."""

from __future__ import annotations

import time

import pytest

from app.connectors.graph.client import (
    GraphBadResponse,
    GraphClient,
    GraphPermanentError,
    GraphSyncStateLost,
    GraphTemporaryError,
)
from app.connectors.graph.credentials import build_credential
from app.simulator.graph import RunningSimulator, SimulatorState

RESOURCES = ("users", "groups", "contacts")


def expected_members(state: SimulatorState) -> dict[str, set[str]]:
    live = state.store.live["groups"]
    return {gid: set(m) for gid, m in state.store.members.items() if m and gid in live}


async def test_full_round_mirrors_exactly_the_accepted_addresses(
    graph_client: GraphClient, simulator: RunningSimulator, mirror
) -> None:
    for resource in RESOURCES:
        await mirror.run(graph_client, resource)
    state = simulator.state
    assert mirror.accepted_map() == state.expected_accepted()
    assert mirror.member_sets() == expected_members(state)
    assert mirror.pages > 10  # several pages per resource, members split across pages
    assert mirror.skipped == 0
    assert state.auth.issued == 1  # one token, cached across every request


async def test_full_round_with_replays_is_idempotent(
    graph_client: GraphClient, simulator: RunningSimulator, mirror
) -> None:
    simulator.state.delta.replay_rate = 1.0
    for resource in RESOURCES:
        await mirror.run(graph_client, resource)
    assert mirror.accepted_map() == simulator.state.expected_accepted()
    assert mirror.member_sets() == expected_members(simulator.state)


async def test_incremental_round_applies_control_api_changes(
    graph_client: GraphClient, simulator: RunningSimulator, mirror
) -> None:
    links = {r: await mirror.run(graph_client, r) for r in RESOURCES}
    state = simulator.state
    users = [
        u
        for u in state.store.live["users"].values()
        if u["userType"] == "Member"
        and u.get("mail")
        and u["mail"].lower().endswith("@contoso.com")
        and any(p.startswith("smtp:") for p in u["proxyAddresses"])
    ]
    groups = [g for g in state.store.live["groups"].values() if g.get("mailEnabled")]
    new = state.add_user(mail="New.Hire@contoso.com", displayName="New Hire")
    state.add_alias(users[0]["id"], "extra.alias@contoso.com")
    removed_alias = next(p[5:] for p in users[1]["proxyAddresses"] if p.startswith("smtp:"))
    state.remove_alias(users[1]["id"], removed_alias)
    state.set_primary(users[2]["id"], "renamed.person@contoso-brand.net")
    state.delete(users[3]["id"])  # soft delete, then restore
    state.restore(users[3]["id"])
    state.delete(users[4]["id"])  # soft delete stays deleted
    state.delete(users[5]["id"], hard=True)
    state.add_member(groups[0]["id"], new["id"])
    member = next(iter(state.store.members[groups[1]["id"]]))
    state.remove_member(groups[1]["id"], member)
    nested = state.add_group(mail="nested@contoso.com", displayName="Nested")
    state.add_member(groups[2]["id"], nested["id"])
    state.delete(groups[3]["id"])
    state.update(users[6]["id"], department="Changed")  # selected, surfaces as an upsert

    before = mirror.pages
    for resource in RESOURCES:
        links[resource] = await mirror.run(graph_client, resource, links[resource])
    assert mirror.pages - before <= 4  # only the changes travel
    expected = state.expected_accepted()
    assert mirror.accepted_map() == expected
    assert expected["new.hire@contoso.com"] == "new.hire@contoso.com"
    assert "extra.alias@contoso.com" in expected
    assert removed_alias.lower() not in expected
    assert expected[users[0]["mail"].lower()] == users[0]["mail"].lower()
    assert mirror.records[users[3]["id"]].addresses
    assert users[4]["id"] not in mirror.records
    assert users[5]["id"] not in mirror.records
    assert mirror.member_sets() == expected_members(state)
    assert nested["id"] in mirror.members[groups[2]["id"]]

    # Nothing changed: the next round is one empty page.
    before = mirror.pages
    await mirror.run(graph_client, "users", links["users"])
    assert mirror.pages - before == 1


async def test_expired_delta_token_raises_sync_state_lost(
    graph_client: GraphClient, simulator: RunningSimulator, mirror
) -> None:
    link = await mirror.run(graph_client, "users")
    simulator.state.expire_delta_tokens()
    with pytest.raises(GraphSyncStateLost):
        await graph_client.fetch_page(link)


async def test_sync_reset_410_raises_sync_state_lost(
    graph_client: GraphClient, simulator: RunningSimulator, mirror
) -> None:
    link = await mirror.run(graph_client, "groups")
    simulator.state.expire_delta_tokens("resyncRequired")
    with pytest.raises(GraphSyncStateLost):
        await graph_client.fetch_page(link)
    # A new full round converges.
    await mirror.run(graph_client, "groups")
    assert mirror.member_sets() == expected_members(simulator.state)


async def test_expired_skiptoken_mid_round_raises_sync_state_lost(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    page = await graph_client.fetch_page(graph_client.initial_delta_url("users"))
    assert page.next_link is not None
    simulator.state.expire_delta_tokens()
    with pytest.raises(GraphSyncStateLost):
        await graph_client.fetch_page(page.next_link)


async def test_short_retry_after_is_retried_by_the_sdk(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    await graph_client.fetch_domains()
    simulator.state.throttle_next(retry_after=1, count=2)
    started = time.monotonic()
    page = await graph_client.fetch_page(graph_client.initial_delta_url("users"))
    assert page.objects
    assert time.monotonic() - started >= 2  # waited Retry-After twice


async def test_retry_after_of_180_seconds_or_more_is_handed_back(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    simulator.state.throttle_next(retry_after=300)
    started = time.monotonic()
    with pytest.raises(GraphTemporaryError) as caught:
        await graph_client.fetch_page(graph_client.initial_delta_url("users"))
    assert caught.value.delay == 300
    # Handed back instead of slept on: far less than the 300 s the SDK would have waited.
    assert time.monotonic() - started < 120


async def test_throttling_after_sdk_retries_is_a_temporary_error(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    simulator.state.throttle_next(retry_after=1, status=503, count=4)
    with pytest.raises(GraphTemporaryError) as caught:
        await graph_client.fetch_domains()
    assert caught.value.delay == 1


async def test_ten_percent_throttling_converges(
    graph_client: GraphClient, simulator: RunningSimulator, mirror
) -> None:
    simulator.state.set_throttling(rate_429=0.05, rate_503=0.05, retry_after=1)
    for resource in RESOURCES:
        await mirror.run(graph_client, resource)
    assert mirror.accepted_map() == simulator.state.expected_accepted()


async def test_link_to_another_host_is_refused(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    simulator.state.corrupt_next("foreign_link")
    with pytest.raises(GraphBadResponse, match="refusing"):
        await graph_client.fetch_page(graph_client.initial_delta_url("users"))
    with pytest.raises(GraphBadResponse):
        await graph_client.fetch_page("https://graph.attacker.example/v1.0/users/delta")


@pytest.mark.parametrize("kind", ["not_json", "missing_value"])
async def test_page_that_is_not_graph_json_is_a_bad_response(
    graph_client: GraphClient, simulator: RunningSimulator, kind: str
) -> None:
    simulator.state.corrupt_next(kind)
    with pytest.raises(GraphBadResponse):
        await graph_client.fetch_page(graph_client.initial_delta_url("users"))


async def test_gateway_error_page_is_temporary(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    simulator.state.corrupt_next("html_error")
    with pytest.raises(GraphTemporaryError):
        await graph_client.fetch_page(graph_client.initial_delta_url("users"))


async def test_revoked_token_is_refreshed_once(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    await graph_client.fetch_domains()
    simulator.state.revoke_tokens()
    assert await graph_client.fetch_domains()
    assert simulator.state.auth.issued == 2


async def test_token_rejected_after_refresh_is_permanent(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    simulator.state.reject_all_tokens()
    with pytest.raises(GraphPermanentError, match="401"):
        await graph_client.fetch_domains()
    assert simulator.state.auth.issued == 2


async def test_wrong_client_secret_is_permanent(simulator: RunningSimulator) -> None:
    def bad_credential():  # type: ignore[no-untyped-def]
        return build_credential(
            tenant_id="contoso",
            client_id=simulator.state.client_id,
            client_secret="wrong",
            authority_host=simulator.authority,
            ca_bundle=str(simulator.ca_file),
        )

    async with GraphClient(
        credential_factory=bad_credential,
        base_url=simulator.base_url,
        ca_bundle=str(simulator.ca_file),
    ) as client:
        with pytest.raises(GraphPermanentError, match="authentication failed"):
            await client.fetch_domains()


async def test_error_messages_never_contain_tokens(
    graph_client: GraphClient, simulator: RunningSimulator, mirror
) -> None:
    link = await mirror.run(graph_client, "users")
    simulator.state.expire_delta_tokens()
    with pytest.raises(GraphSyncStateLost) as caught:
        await graph_client.fetch_page(link)
    token = link.partition("$deltatoken=")[2]
    assert token
    assert token not in str(caught.value)
    assert "deltatoken" in str(caught.value)


@pytest.mark.private_simulator
async def test_unreachable_graph_is_a_temporary_error(
    graph_client: GraphClient, simulator: RunningSimulator
) -> None:
    await graph_client.fetch_domains()  # token cached: the Graph call itself fails
    simulator.stop()
    with pytest.raises(GraphTemporaryError):
        await graph_client.fetch_domains()


@pytest.mark.private_simulator
async def test_unreachable_token_endpoint_is_a_temporary_error(
    simulator: RunningSimulator, credential_factory
) -> None:
    async with GraphClient(
        credential_factory=credential_factory,
        base_url=simulator.base_url,
        ca_bundle=str(simulator.ca_file),
    ) as client:
        simulator.stop()
        with pytest.raises(GraphTemporaryError):
            await client.fetch_domains()

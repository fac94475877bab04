"""The simulator's Graph surface over HTTPS: paging, tokens, $select, @removed, faults, auth."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.simulator.graph import RunningSimulator, SimulatorState


def full_round(http: httpx.Client, url: str) -> tuple[list[list[dict[str, Any]]], str]:
    pages: list[list[dict[str, Any]]] = []
    while True:
        body = http.get(url).raise_for_status().json()
        assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            return pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


def test_graph_routes_need_a_valid_bearer_token(sim: RunningSimulator) -> None:
    with httpx.Client(verify=False) as anonymous:  # noqa: S501 - only the 401 matters here
        answer = anonymous.get(f"{sim.base_url}/users/delta")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"
        bad = anonymous.get(f"{sim.base_url}/domains", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401


def test_token_endpoint_refuses_a_wrong_secret(http: httpx.Client, sim: RunningSimulator) -> None:
    answer = http.post(
        f"/{sim.state.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sim.state.client_id,
            "client_secret": "wrong",
            "scope": "x",
        },
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_openid_configuration_names_the_token_endpoint(
    http: httpx.Client, sim: RunningSimulator
) -> None:
    body = http.get("/contoso/v2.0/.well-known/openid-configuration").json()
    assert body["token_endpoint"] == f"{sim.origin}/contoso/oauth2/v2.0/token"
    assert "authorization_endpoint" in body
    assert http.get("/common/discovery/instance").json()["tenant_discovery_endpoint"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/users/delta",
        "/v1.0/users/delta()",
        "/v1.0/users/microsoft.graph.delta",
        "/v1.0//users/delta()",
    ],
)
def test_every_delta_spelling_is_accepted(http: httpx.Client, path: str) -> None:
    body = http.get(path).raise_for_status().json()
    assert len(body["value"]) == 25
    assert "$skiptoken=" in body["@odata.nextLink"]


def test_full_round_pages_users_and_honours_select(
    http: httpx.Client, sim_state: SimulatorState
) -> None:
    pages, delta_link = full_round(http, "/v1.0/users/delta?$select=mail,proxyAddresses")
    objects = [o for page in pages for o in page]
    assert [len(p) for p in pages] == [25, 25, 25, 25, 20]
    assert {o["id"] for o in objects} == set(sim_state.store.live["users"])
    assert all(set(o) == {"id", "mail", "proxyAddresses"} for o in objects)
    assert "$deltatoken=" in delta_link


def test_without_select_users_lack_proxy_addresses(http: httpx.Client) -> None:
    user = http.get("/v1.0/users/delta").json()["value"][0]
    assert "userPrincipalName" in user
    assert "proxyAddresses" not in user


def test_large_groups_are_split_and_empty_groups_have_no_members_key(
    http: httpx.Client, sim_state: SimulatorState
) -> None:
    sim_state.add_group(displayName="Empty", mail="empty@contoso.com")
    pages, _ = full_round(http, "/v1.0/groups/delta?$select=displayName,mail,members")
    seen: dict[str, set[str]] = {}
    appearances: dict[str, int] = {}
    for page in pages:
        for group in page:
            appearances[group["id"]] = appearances.get(group["id"], 0) + 1
            for member in group.get("members@delta", []):
                seen.setdefault(group["id"], set()).add(member["id"])
            if group["displayName"] == "Empty":
                assert "members@delta" not in group
    expected = {g: set(m) for g, m in sim_state.store.members.items() if m}
    assert seen == expected
    biggest = max(expected, key=lambda g: len(expected[g]))
    assert appearances[biggest] == -(-len(expected[biggest]) // 10)


def test_incremental_round_reports_only_changes(
    http: httpx.Client, sim_state: SimulatorState
) -> None:
    _, link = full_round(http, "/v1.0/users/delta?$select=mail,proxyAddresses,department")
    user_ids = list(sim_state.store.live["users"])
    new = sim_state.add_user(mail="fresh@contoso.com")
    sim_state.update(user_ids[0], department="Legal")
    sim_state.update(user_ids[1], jobTitle="Not selected")  # untracked property: not reported
    sim_state.delete(user_ids[2])
    sim_state.delete(user_ids[3], hard=True)
    pages, link = full_round(http, link)
    changes = {o["id"]: o for page in pages for o in page}
    assert set(changes) == {new["id"], user_ids[0], user_ids[2], user_ids[3]}
    assert changes[user_ids[0]]["department"] == "Legal"
    assert changes[user_ids[2]]["@removed"] == {"reason": "changed"}
    assert changes[user_ids[3]]["@removed"] == {"reason": "deleted"}
    sim_state.restore(user_ids[2])
    pages, _ = full_round(http, link)
    assert [o["id"] for page in pages for o in page] == [user_ids[2]]


def test_membership_changes_arrive_as_members_delta(
    http: httpx.Client, sim_state: SimulatorState
) -> None:
    _, link = full_round(http, "/v1.0/groups/delta?$select=displayName,members")
    group = next(g for g, m in sim_state.store.members.items() if m)
    gone = next(iter(sim_state.store.members[group]))
    new = sim_state.add_user(mail="joiner@contoso.com")
    sim_state.add_member(group, new["id"])
    sim_state.remove_member(group, gone)
    pages, _ = full_round(http, link)
    [item] = [o for page in pages for o in page]
    assert item["members@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": new["id"]},
        {"@odata.type": "#microsoft.graph.user", "id": gone, "@removed": {"reason": "deleted"}},
    ]


def test_expired_tokens_answer_sync_state_not_found_or_410(
    http: httpx.Client, sim_state: SimulatorState
) -> None:
    _, link = full_round(http, "/v1.0/users/delta?$select=mail")
    sim_state.expire_delta_tokens()
    answer = http.get(link)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "syncStateNotFound"
    _, link = full_round(http, "/v1.0/users/delta?$select=mail")
    sim_state.expire_delta_tokens("resyncRequired")
    gone = http.get(link)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "resyncRequired"
    assert gone.headers["Location"].endswith("/v1.0/users/delta?$select=id,mail")


def test_tampered_token_is_a_bad_request(http: httpx.Client) -> None:
    link = http.get("/v1.0/users/delta").json()["@odata.nextLink"]
    answer = http.get(link[:-3] + "AAA")
    assert answer.status_code == 400


def test_latest_delta_token_returns_only_a_link(http: httpx.Client) -> None:
    body = http.get("/v1.0/users/delta?$deltatoken=latest").json()
    assert body["value"] == []
    assert "@odata.deltaLink" in body


def test_throttle_next_answers_429_with_retry_after(
    http: httpx.Client, sim_state: SimulatorState
) -> None:
    sim_state.throttle_next(retry_after=7, count=1)
    answer = http.get("/v1.0/users/delta")
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["error"]["code"] == "TooManyRequests"
    assert http.get("/v1.0/users/delta").status_code == 200
    sim_state.set_throttling(rate_503=1.0, retry_after=2)
    assert http.get("/v1.0/domains").status_code == 503


def test_replays_repeat_objects(http: httpx.Client, sim_state: SimulatorState) -> None:
    sim_state.delta.replay_rate = 1.0
    pages, _ = full_round(http, "/v1.0/users/delta?$select=mail")
    ids = [o["id"] for page in pages for o in page]
    assert len(ids) == len(sim_state.store.live["users"]) + len(pages) - 1
    assert set(ids) == set(sim_state.store.live["users"])


def test_domains_list_verified_and_unverified(http: httpx.Client) -> None:
    domains = http.get("/v1.0/domains").json()["value"]
    assert any(d["isVerified"] is False for d in domains)
    assert any(d["isVerified"] and "Email" not in d["supportedServices"] for d in domains)


def test_control_api_changes_the_tenant(http: httpx.Client, sim_state: SimulatorState) -> None:
    created = http.post("/_control/users", json={"mail": "ctl@contoso.com"}).json()
    assert (
        http.post(
            f"/_control/objects/{created['id']}/aliases", json={"address": "ctl2@contoso.com"}
        ).status_code
        == 200
    )
    assert sim_state.expected_accepted()["ctl2@contoso.com"] == "ctl@contoso.com"
    group = next(iter(sim_state.store.live["groups"]))
    members = f"/_control/groups/{group}/members"
    assert http.post(members, json={"id": created["id"]}).status_code == 204
    assert created["id"] in sim_state.store.members[group]
    assert http.delete(f"{members}/{created['id']}").status_code == 204
    assert http.delete(f"/_control/objects/{created['id']}").status_code == 204
    assert "ctl@contoso.com" not in http.get("/_control/expected").json()
    assert http.post(f"/_control/objects/{created['id']}/restore").status_code == 200
    assert http.delete("/_control/objects/unknown").status_code == 404
    assert http.post("/_control/faults/throttle-next", json={"retry_after": 3}).status_code == 204
    assert http.get("/v1.0/domains").status_code == 429
    assert http.post("/_control/faults/expire-delta-tokens", json={}).status_code == 204
    assert http.get("/_control/state").json()["users"] == len(sim_state.store.live["users"])

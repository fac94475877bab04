"""GraphSource through the runner into the real mirror, on SQLite and PostgreSQL.

The real msgraph-sdk and azure-identity talk HTTPS to the simulator; the oracle is
`SimulatorState.expected_accepted()` (lower-cased address -> primary).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.connectors import status
from app.connectors.base import Page
from app.connectors.graph.client import GraphClient
from app.connectors.graph.source import GraphSource
from app.connectors.guard import GuardSettings
from app.connectors.runner import RunnerOptions, approve_deletions, run_cycle
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex
from app.directory.models import Connector, Cursor, Domain, Membership, Recipient
from app.directory.verdicts import Reason, Verdict
from app.settings import GraphSettings
from app.simulator.graph import RunningSimulator, SimulatorState


class Sleeps:
    """The runner's sleep: recorded, never waited."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.calls.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def options(sleeps: Sleeps) -> RunnerOptions:
    return RunnerOptions(sleep=sleeps)


async def load_index(engine: AsyncEngine) -> LookupIndex:
    index = LookupIndex()
    await IndexSync(index, engine).load()
    return index


async def accepted(engine: AsyncEngine) -> dict[str, str]:
    """What the lookup index accepts: address -> primary, as the oracle spells it."""
    index = await load_index(engine)
    return {
        f"{local}@{domain}": entry.primary
        for domain, table in index.tables.items()
        for local, entry in table.items()
    }


async def memberships(sessionmaker: async_sessionmaker[AsyncSession]) -> set[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Recipient.external_id, Membership.member_external_id).join(
                Recipient, Recipient.id == Membership.group_id
            )
        )
        return {(g, m) for g, m in rows}


def expected_memberships(state: SimulatorState) -> set[tuple[str, str]]:
    store = state.store
    return {
        (gid, member)
        for gid, members in store.members.items()
        if gid in store.live["groups"]
        for member in members
    }


async def connector_row(sessionmaker: async_sessionmaker[AsyncSession], cid: str) -> Connector:
    async with sessionmaker() as session:
        row = await session.get(Connector, cid)
        assert row is not None
        return row


async def cycle(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Any,
    options: RunnerOptions,
    *,
    full: bool = False,
) -> Any:
    return await run_cycle(sessionmaker, connector_id, source, full=full, options=options)


async def test_full_round_mirrors_the_simulated_tenant_exactly(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
) -> None:
    report = await cycle(sessionmaker, connector_id, source, options)
    assert report.ok, report.error
    state = simulator.state
    assert await accepted(engine) == state.expected_accepted()
    assert await memberships(sessionmaker) == expected_memberships(state)
    row = await connector_row(sessionmaker, connector_id)
    assert (row.state, row.first_round_done, row.last_error) == ("ready", True, None)
    async with sessionmaker() as session:
        domains = set(await session.scalars(select(Domain.name)))
    assert domains == state.store.accepted_domains()
    assert "contoso-legacy.org" not in domains  # unverified
    assert "sso.contoso.com" not in domains  # verified, but no Email service


async def test_incremental_rounds_follow_every_kind_of_change(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
) -> None:
    state = simulator.state
    assert (await cycle(sessionmaker, connector_id, source, options)).ok

    async def converged() -> dict[str, str]:
        report = await cycle(sessionmaker, connector_id, source, options)
        assert report.ok, report.error
        got = await accepted(engine)
        assert got == state.expected_accepted()
        assert await memberships(sessionmaker) == expected_memberships(state)
        return got

    new = state.add_user(mail="New.Person@contoso.com", displayName="New Person")
    dl = state.add_group(mail="project-x@contoso.com", displayName="Project X")
    state.add_member(dl["id"], new["id"])
    got = await converged()
    assert got["new.person@contoso.com"] == "new.person@contoso.com"
    assert got["project-x@contoso.com"] == "project-x@contoso.com"

    state.add_alias(new["id"], "np@contoso-brand.net")
    state.add_alias(new["id"], "np@contoso-legacy.org")  # unverified: never accepted
    assert (await converged())["np@contoso-brand.net"] == "new.person@contoso.com"
    assert "np@contoso-legacy.org" not in await accepted(engine)

    state.remove_alias(new["id"], "np@contoso-brand.net")
    state.set_primary(new["id"], "person@contoso.com")
    got = await converged()
    assert "np@contoso-brand.net" not in got
    assert got["person@contoso.com"] == got["new.person@contoso.com"] == "person@contoso.com"

    # Nesting, then membership removal.
    parent = state.add_group(mail="all-projects@contoso.com", displayName="All projects")
    state.add_member(parent["id"], dl["id"])
    other = next(u for u in state.store.live["users"].values() if u.get("mail"))
    state.add_member(dl["id"], other["id"])
    await converged()
    assert (parent["id"], dl["id"]) in await memberships(sessionmaker)
    state.remove_member(dl["id"], other["id"])
    await converged()

    # Soft delete removes the addresses; a restore brings them back with the memberships.
    state.delete(new["id"])
    got = await converged()
    assert "person@contoso.com" not in got
    state.restore(new["id"])
    got = await converged()
    assert got["person@contoso.com"] == "person@contoso.com"
    assert (dl["id"], new["id"]) in await memberships(sessionmaker)

    # Hard delete of a user; a group deleted with its memberships.
    state.delete(new["id"], hard=True)
    state.delete(dl["id"])
    got = await converged()
    assert "person@contoso.com" not in got
    assert "project-x@contoso.com" not in got
    assert not {(g, m) for g, m in await memberships(sessionmaker) if dl["id"] in (g, m)}


class FailAfter:
    """Wraps a source and fails after `pages` pages of a stream (an error, not a kill: the
    signal tests in test_sync_signals.py kill real processes)."""

    def __init__(self, inner: GraphSource, stream: str, pages: int) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.streams = inner.streams
        self.stream = stream
        self.pages_left = pages
        self.cursors: list[tuple[str, dict[str, Any] | None]] = []

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        self.cursors.append((stream, cursor))
        async for page in self.inner.pages(stream, cursor):
            if stream == self.stream:
                if self.pages_left == 0:
                    raise RuntimeError("failed between pages")
                self.pages_left -= 1
            yield page


async def test_a_round_that_fails_between_pages_resumes_from_the_stored_link(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
) -> None:
    failing = FailAfter(source, "users", pages=3)
    report = await cycle(sessionmaker, connector_id, failing, options)
    assert not report.ok
    assert "failed between pages" in (report.error or "")
    row = await connector_row(sessionmaker, connector_id)
    assert (row.state, row.first_round_done) == ("error", False)
    # The first round has not finished: unknown addresses defer instead of bouncing.
    index = await load_index(engine)
    answer = index.lookup("nobody@contoso.com")
    assert (answer.verdict, answer.reason) == (Verdict.TEMPFAIL, Reason.NOT_READY)

    resumed = FailAfter(source, "users", pages=10_000)
    assert (await cycle(sessionmaker, connector_id, resumed, options)).ok
    users_cursor = dict(resumed.cursors)["users"]
    assert users_cursor is not None and "skiptoken" in users_cursor["link"]
    assert dict(resumed.cursors)["groups"] is None  # never started before the failure
    state = simulator.state
    assert await accepted(engine) == state.expected_accepted()
    assert await memberships(sessionmaker) == expected_memberships(state)
    assert (await connector_row(sessionmaker, connector_id)).state == "ready"


@pytest.mark.parametrize("code", ["syncStateNotFound", "resyncRequired"])
async def test_expired_delta_tokens_start_a_full_round_that_sweeps(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
    code: str,
) -> None:
    state = simulator.state
    assert (await cycle(sessionmaker, connector_id, source, options)).ok
    gone = next(u for u in state.store.live["users"].values() if u.get("mail"))
    state.delete(gone["id"], hard=True)
    state.expire_delta_tokens(code)
    report = await cycle(sessionmaker, connector_id, source, options)
    assert report.ok, report.error
    assert gone["mail"].lower() not in await accepted(engine)  # swept: no @removed for it
    assert await accepted(engine) == state.expected_accepted()
    assert (await connector_row(sessionmaker, connector_id)).state == "ready"


async def test_ten_percent_throttling_converges(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
) -> None:
    state = simulator.state
    state.set_throttling(rate_429=0.07, rate_503=0.03, retry_after=1)
    report = await cycle(sessionmaker, connector_id, source, options)
    assert report.ok, report.error
    state.add_user(mail="late@contoso.com")
    assert (await cycle(sessionmaker, connector_id, source, options)).ok
    state.set_throttling()
    assert await accepted(engine) == state.expected_accepted()


async def test_retry_after_beyond_the_sdk_limit_is_honoured_by_the_runner(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    sleeps: Sleeps,
    simulator: RunningSimulator,
) -> None:
    simulator.state.throttle_next(retry_after=240)  # the SDK hands >= 180 s back
    report = await cycle(sessionmaker, connector_id, source, options)
    assert report.ok, report.error
    assert sleeps.calls == [240.0]
    assert await accepted(engine) == simulator.state.expected_accepted()


async def test_a_mass_delete_is_held_until_approved(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    simulator: RunningSimulator,
    sleeps: Sleeps,
) -> None:
    state = simulator.state
    options = RunnerOptions(sleep=sleeps, guard=GuardSettings(threshold=10))
    assert (await cycle(sessionmaker, connector_id, source, options)).ok
    before = await accepted(engine)
    victims = [u for u in state.store.live["users"].values() if u.get("mail")][:25]
    for user in victims:
        state.delete(user["id"])
    report = await cycle(sessionmaker, connector_id, source, options)
    assert report.ok and report.held_deletions
    assert (await connector_row(sessionmaker, connector_id)).state == "needs_approval"
    assert await accepted(engine) == before  # held addresses keep being accepted
    assert await approve_deletions(sessionmaker, connector_id) == len(victims)
    assert await accepted(engine) == state.expected_accepted()
    assert (await connector_row(sessionmaker, connector_id)).state == "ready"


async def test_addresses_that_are_not_deliverable_are_never_accepted(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
) -> None:
    state = simulator.state
    state.add_user(
        mail="odd@contoso.com",
        userPrincipalName="odd.upn@contoso.com",
        otherMails=["odd-reset@contoso.com"],
        proxyAddresses=[
            "SMTP:odd@contoso.com",
            "SIP:sip-only@contoso.com",
            "X500:/o=ExchangeLabs/ou=Exchange Administrative Group/cn=x500-only@contoso.com",
            "SPO:SPO_x@contoso.com",
            "smtp:odd@contoso-legacy.org",
            "smtp:odd@sso.contoso.com",
        ],
    )
    state.add_user(userPrincipalName="upn.only@contoso.com", mail=None, proxyAddresses=[])
    state.add_user(
        userType="Guest",
        mail="guest@fabrikam.com",
        userPrincipalName="guest_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        proxyAddresses=["SMTP:guest@fabrikam.com"],
    )
    state.add_group(displayName="Security only", securityEnabled=True)
    assert (await cycle(sessionmaker, connector_id, source, options)).ok
    got = await accepted(engine)
    assert got == state.expected_accepted()
    assert got["odd@contoso.com"] == "odd@contoso.com"
    index = await load_index(engine)
    for address in (
        "sip-only@contoso.com",
        "odd.upn@contoso.com",
        "odd-reset@contoso.com",
        "upn.only@contoso.com",
        "guest_fabrikam.com#ext#@contoso.onmicrosoft.com",
    ):
        assert index.lookup(address).reason == Reason.UNKNOWN_RECIPIENT, address
    for address in ("odd@contoso-legacy.org", "odd@sso.contoso.com", "guest@fabrikam.com"):
        assert index.lookup(address).reason == Reason.DOMAIN_NOT_ACCEPTED, address
    for user in state.store.live["users"].values():
        if user["userType"] == "Guest":
            assert user["mail"].lower() not in got
        if not user.get("mail"):
            assert user["userPrincipalName"].lower() not in got
    async with sessionmaker() as session:
        for group in state.store.live["groups"].values():
            if not group.get("mailEnabled"):
                row = await session.scalar(
                    select(Recipient).where(Recipient.external_id == group["id"])
                )
                assert row is not None and row.kind == "group"  # kept for nesting
                assert not [a for a, p in got.items() if group["displayName"] in (a, p)]


@pytest.mark.parametrize("kind", ["not_json", "missing_value", "foreign_link"])
async def test_a_bad_page_fails_the_round_and_leaves_the_mirror_as_it_was(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
    kind: str,
) -> None:
    state = simulator.state
    assert (await cycle(sessionmaker, connector_id, source, options)).ok
    before = await accepted(engine)
    async with sessionmaker() as session:
        cursor_before = {c.stream: c.value for c in await session.scalars(select(Cursor))}
    state.add_user(mail="after-bad-page@contoso.com")
    state.corrupt_next(kind)
    report = await cycle(sessionmaker, connector_id, source, options)
    assert not report.ok
    assert "PermanentSourceError" in (report.error or "")
    assert await accepted(engine) == before
    async with sessionmaker() as session:
        assert {c.stream: c.value for c in await session.scalars(select(Cursor))} == cursor_before
    row = await connector_row(sessionmaker, connector_id)
    assert row.state == "error" and row.last_error
    assert "graph.attacker.example/" not in row.last_error  # the host may be named, no link
    report = await cycle(sessionmaker, connector_id, source, options)
    assert report.ok, report.error
    assert await accepted(engine) == state.expected_accepted()


async def test_objects_without_an_id_are_skipped_and_counted(
    source: GraphSource, simulator: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    state = simulator.state
    state.corrupt_next("missing_id")
    caplog.set_level(logging.WARNING)
    pages = [page async for page in source.pages("users", None)]
    assert pages[-1].final and all(not p.final for p in pages[:-1])
    assert source.stats.skipped == 1
    assert "count=1" in caplog.text
    assert pages[0].domains == pages[-1].domains == sorted(state.store.accepted_domains())
    assert all(p.domains is None for p in pages[1:-1])


async def test_secrets_and_links_never_reach_logs_or_status(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: GraphSource,
    options: RunnerOptions,
    simulator: RunningSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="app")
    state = simulator.state
    assert (await cycle(sessionmaker, connector_id, source, options)).ok
    state.add_user(mail="logged@contoso.com")
    state.throttle_next(status=503, retry_after=240)
    assert (await cycle(sessionmaker, connector_id, source, options)).ok
    state.corrupt_next("foreign_link")
    assert not (await cycle(sessionmaker, connector_id, source, options)).ok
    async with sessionmaker() as session:
        links = [c.value["link"] for c in await session.scalars(select(Cursor))]
        row = await session.get(Connector, connector_id)
        assert row is not None
        described = orjson.dumps(await status.describe(session, row, "default")).decode()
    tokens = [link.partition("token=")[2] for link in links]
    assert tokens and all(tokens)
    for text in (caplog.text, described):
        assert state.client_secret not in text
        assert re.search(r"token=(?!\*\*\*)", text) is None
        for token in tokens:
            assert token not in text
        for issued in state.auth.tokens:
            assert issued not in text


async def test_unusable_credentials_fail_the_round_with_a_clear_error(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    graph_settings: GraphSettings,
    options: RunnerOptions,
) -> None:
    bad = graph_settings.model_copy(update={"client_secret": "wrong-secret"})
    report = await cycle(sessionmaker, connector_id, GraphSource(bad), options)
    assert not report.ok
    assert "PermanentSourceError" in (report.error or "")
    assert "wrong-secret" not in (report.error or "")
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Recipient))
    assert count == 0


async def test_rounds_close_together_share_one_client_and_an_idle_one_is_closed(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    graph_settings: GraphSettings,
    simulator: RunningSimulator,
    options: RunnerOptions,
) -> None:
    built: list[GraphClient] = []

    def build() -> GraphClient:
        built.append(GraphClient.from_settings(graph_settings))
        return built[-1]

    source = GraphSource(graph_settings, client_factory=build)
    try:
        assert (await cycle(sessionmaker, connector_id, source, options, full=True)).ok
        simulator.state.add_user(mail="shared.client@contoso.com")
        assert (await cycle(sessionmaker, connector_id, source, options)).ok
        assert len(built) == 1  # both streams, both rounds: one client, one token
        assert source.stats.client.requests > 4  # each round's traffic is still counted
    finally:
        await source.aclose()

    idle = GraphSource(graph_settings, client_factory=build, client_idle=0.0)
    assert (await cycle(sessionmaker, connector_id, idle, options)).ok
    for _ in range(1500):  # the idle client closes (a poll: up to 30 s on a busy machine)
        if idle._client is None:
            break
        await asyncio.sleep(0.02)
    assert idle._client is None
    assert (await cycle(sessionmaker, connector_id, idle, options)).ok
    assert len(built) >= 3
    await idle.aclose()

"""Inbox rows are marked handled only once the round that covers them has committed its final
page: the runner reads pages ahead, so a final page can be produced long before it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import pagewriter
from app.connectors.base import ChangeSet, Page, RecipientKind, RecipientRecord, SourceKind
from app.connectors.graph.inbox import CHANGE, InboxAwareSource
from app.connectors.graph.models import WebhookInbox
from app.connectors.runner import RunnerOptions, run_cycle
from app.directory.models import Connector
from tests.factories import make_connector


class TwoPages:
    """A users stream of two pages, both ready at once."""

    kind = SourceKind.GRAPH
    streams = ("users",)

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        for number, final in ((0, False), (1, True)):
            user = RecipientRecord(f"u{number}", RecipientKind.USER, (f"u{number}@contoso.com",))
            link = {"link": "delta-2" if final else f"next-{number}"}
            yield Page(ChangeSet(upserts=[user]), link, final=final)


async def pending(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessionmaker() as session:
        query = select(WebhookInbox.id).where(WebhookInbox.handled_at.is_(None))
        return list(await session.scalars(query))


async def test_rows_stay_pending_when_the_final_page_never_commits(
    sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagewriter, "BATCH_MAX_PAGES", 1)  # page 0 commits alone, page 1 waits
    async with sessionmaker.begin() as session:
        connector = await make_connector(session, SourceKind.GRAPH, ready=False)
        session.add(
            WebhookInbox(
                dedupe_key="n1", connector_id=connector.id, subscription_id="s", stream="users",
                kind=CHANGE, resource="users/u1", received_at=datetime.now(UTC),
            )
        )  # fmt: skip
    steal_lease = True

    async def after_first_commit() -> None:  # another replica takes the connector over
        if steal_lease:
            async with sessionmaker.begin() as session:
                await session.execute(
                    update(Connector)
                    .where(Connector.id == connector.id)
                    .values(lease_owner="other replica")
                )

    options = RunnerOptions(owner="me")
    source = InboxAwareSource(
        TwoPages(), sessionmaker, connector.id, after_commit=after_first_commit
    )
    report = await run_cycle(
        sessionmaker, connector.id, source, options=options, after_commit=source.after_commit
    )
    assert not report.ok and "lost the lease" in (report.error or "")
    assert len(await pending(sessionmaker)) == 1  # its final page did not commit

    steal_lease = False
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Connector).where(Connector.id == connector.id).values(lease_owner=None)
        )
    report = await run_cycle(
        sessionmaker, connector.id, source, options=options, after_commit=source.after_commit
    )
    assert report.ok, report.error
    assert await pending(sessionmaker) == []
    assert source.rounds_marked == 1

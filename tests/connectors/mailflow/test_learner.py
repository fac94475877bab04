"""The batching learner behind the policy service, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.mailflow import learning
from app.connectors.mailflow.learner import MailflowLearner
from app.connectors.mailflow.learning import LearnedStatus
from tests.factories import make_domain

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


async def views(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, learning.LearnedView]:
    async with sessionmaker() as session:
        found, _ = await learning.list_learned(session)
    return {v.sender.address: v for v in found}


async def test_one_message_to_many_recipients_counts_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
    changes: list[str] = []

    async def on_change() -> None:
        changes.append("refresh")

    learner = MailflowLearner(sessionmaker, min_count=2, on_change=on_change, clock=lambda: T0)
    # RCPT x3 and END-OF-MESSAGE of one message share Postfix's `instance`.
    for _ in range(4):
        learner.observe("Kim@contoso.com", "sasl:kim", instance="1234.abc.1")
    assert await learner.flush() == 1
    assert (await views(sessionmaker))["kim@contoso.com"].sender.count == 1
    assert changes == []
    learner.observe("kim@contoso.com", "sasl:kim", instance="1234.abc.2")
    assert await learner.flush() == 1
    view = (await views(sessionmaker))["kim@contoso.com"]
    assert (view.status, view.sender.count, view.sender.evidence) == (
        LearnedStatus.LEARNED,
        2,
        "sasl:kim",
    )
    assert changes == ["refresh"]


async def test_junk_and_foreign_senders_are_dropped_without_failing_the_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
    learner = MailflowLearner(sessionmaker)
    assert not learner.observe("not an address", "network:10.0.0.1")
    learner.observe("x@gmail.com", "network:10.0.0.1")
    learner.observe("lee@contoso.com", "network:10.0.0.1")
    assert await learner.flush() == 1
    assert list(await views(sessionmaker)) == ["lee@contoso.com"]


async def test_background_loop_flushes_soon_after_a_sighting(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
    learner = MailflowLearner(sessionmaker, flush_interval=0.01)
    task = asyncio.create_task(learner.run())
    try:
        learner.observe("max@contoso.com", "sasl:max")
        for _ in range(200):
            if "max@contoso.com" in await views(sessionmaker):
                break
            await asyncio.sleep(0.02)
        assert "max@contoso.com" in await views(sessionmaker)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

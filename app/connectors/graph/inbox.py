"""The webhook inbox: verified notifications stored before the 202, drained into delta rounds.

Writes are group-committed: concurrent requests share one transaction, so ingest is bounded by
commits per second rather than requests per second, and each request still answers only once its
rows are durable (a 5xx otherwise, so Graph retries).

Rows are marked handled right after the round that covers them commits, not inside the round's
transactions: the runner is generic and knows nothing of the inbox, and "after" is just as safe.
A round claims the pending rows of its stream when it starts (before its first request to
Graph), so every claimed change happened before the round read the directory; the rows are
marked once the final page is durable. A crash in between leaves them pending, which costs one
more (cheap, idempotent) delta round and never loses a change: at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import String, Table, cast, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import cursors
from app.connectors.base import Page, Source
from app.connectors.graph.models import WebhookInbox
from app.connectors.graph.notifications import (
    CHANGE,
    MalformedNotification,
    SubscriptionRegistry,
    WebhookStats,
    parse,
    verify,
)
from app.connectors.runs import Trigger
from app.connectors.worker import request_sync
from app.db.upsert import insert_ignore

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
CHUNK = 500
KEEP_HANDLED = timedelta(days=1)
CLAIMED = "claimed:"
INBOX: Table = WebhookInbox.__table__


def utcnow() -> datetime:
    return datetime.now(UTC)


class InboxWriter:
    """Group commit for inbox rows; `store` returns once the rows are committed."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, max_batch: int = 5000
    ) -> None:
        self.sessionmaker = sessionmaker
        self.max_batch = max_batch
        self.commits = 0
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def store(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="graph-inbox-writer")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, future))
        self._wake.set()
        await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RuntimeError("inbox writer stopped"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
                size = 0
                while self._queue and size < self.max_batch:
                    rows, future = self._queue.pop(0)
                    batch.append((rows, future))
                    size += len(rows)
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[list[dict[str, Any]], asyncio.Future[None]]]) -> None:
        unique: dict[str, dict[str, Any]] = {}
        for rows, _ in batch:
            for row in rows:
                unique.setdefault(row["dedupe_key"], row)
        try:
            async with self.sessionmaker.begin() as session:
                await insert_ignore(session, INBOX, list(unique.values()))
        except asyncio.CancelledError:
            for _, future in batch:
                if not future.done():
                    future.set_exception(RuntimeError("inbox writer stopped"))
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.commits += 1
        for _, future in batch:
            if not future.done():
                future.set_result(None)


class WebhookReceiver:
    """What the webhook routes call: parse, verify each item, store, wake whoever drains.

    Listeners are told after a commit whether a lifecycle event arrived (the subscription
    manager acts on those) or only changes (the drainer asks for a round).
    """

    def __init__(
        self,
        registry: SubscriptionRegistry,
        writer: InboxWriter,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.registry = registry
        self.writer = writer
        self.stats = WebhookStats()
        self.clock = clock
        self.listeners: list[Callable[[bool], None]] = []
        self.drainer: InboxDrainer | None = None  # set when `roster serve` starts them
        self.managers: list[Any] = []
        self._last_warning = 0.0

    async def receive(self, body: bytes, *, lifecycle: bool) -> int:
        """Returns how many items were stored; raises MalformedNotification for a bad body."""
        self.stats.requests += 1
        try:
            parsed = parse(body, lifecycle=lifecycle)
        except MalformedNotification:
            self.stats.rejected_bodies += 1
            raise
        dropped = self.stats.dropped
        verified = await verify(parsed, self.registry, self.stats, now=self.clock())
        if self.stats.dropped > dropped:
            self._warn_dropped()
        if not verified.rows:
            return 0
        try:
            await self.writer.store(verified.rows)
        except Exception:
            self.stats.store_failures += 1
            raise
        for listener in self.listeners:
            listener(verified.wants_manager)
        return len(verified.rows)

    def _warn_dropped(self) -> None:
        """At most one line per 10 s: forged traffic must not flood the log."""
        now = time.monotonic()
        if now - self._last_warning < 10:
            return
        self._last_warning = now
        logger.warning(
            "graph notifications dropped: unknown_subscription=%d bad_client_state=%d malformed=%d",
            self.stats.unknown_subscription,
            self.stats.bad_client_state,
            self.stats.malformed,
        )

    async def close(self) -> None:
        await self.writer.close()


# ---- rounds


async def claim_pending(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str, stream: str
) -> list[int]:
    """Pending change rows of a stream (including rows a failed round claimed); their dedupe
    keys are retired, so a notification arriving from now on is stored as a new row and gets a
    round of its own instead of being folded into a round that has already read Graph."""
    async with sessionmaker.begin() as session:
        rows = (
            await session.execute(
                select(WebhookInbox.id, WebhookInbox.dedupe_key).where(
                    WebhookInbox.connector_id == connector_id,
                    WebhookInbox.stream == stream,
                    WebhookInbox.kind == CHANGE,
                    WebhookInbox.handled_at.is_(None),
                )
            )
        ).all()
        fresh = [row_id for row_id, key in rows if not key.startswith(CLAIMED)]
        for chunk in _chunks(fresh):
            await session.execute(
                update(WebhookInbox)
                .where(WebhookInbox.id.in_(chunk))
                .values(dedupe_key=literal(CLAIMED, String) + cast(WebhookInbox.id, String))
                .execution_options(synchronize_session=False)
            )
        return sorted(row_id for row_id, _ in rows)


async def mark_handled(
    sessionmaker: async_sessionmaker[AsyncSession], ids: list[int], *, now: datetime
) -> None:
    async with sessionmaker.begin() as session:
        for chunk in _chunks(ids):
            await session.execute(
                update(WebhookInbox)
                .where(WebhookInbox.id.in_(chunk))
                .values(handled_at=now)
                .execution_options(synchronize_session=False)
            )


async def add_follow_up(
    session: AsyncSession, *, reason: str, connector_id: str, subscription_id: str, stream: str,
    now: datetime,
) -> None:  # fmt: skip
    """A change row standing for "run a delta round of this stream", e.g. after a lifecycle
    event was acted on or a subscription was (re)created (it only reports later changes)."""
    await insert_ignore(
        session,
        INBOX,
        [
            {
                "dedupe_key": hashlib.sha256(f"follow-up:{reason}".encode()).hexdigest(),
                "connector_id": connector_id,
                "subscription_id": subscription_id,
                "stream": stream,
                "kind": CHANGE,
                "resource": None,
                "received_at": now,
                "handled_at": None,
            }
        ],
    )


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


class InboxAwareSource:
    """Wraps a Graph source so each stream's round marks the inbox rows it covers.

    Pass `after_commit` (the runner's hook) to the runner: it chains the original hook first
    (the lookup index sees the change sooner), then marks the rows of a round whose final page
    has committed. The runner reads pages ahead and commits several at a time, so a final page
    that was produced may not be committed yet at a given commit: its rows wait until the
    stored resume point is the final page's own.
    """

    def __init__(
        self,
        source: Source,
        sessionmaker: async_sessionmaker[AsyncSession],
        connector_id: str,
        *,
        after_commit: Callable[[], Awaitable[None]] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.source = source
        self.kind = source.kind
        self.streams: tuple[str, ...] = source.streams
        self.sessionmaker = sessionmaker
        self.connector_id = connector_id
        self._chained = after_commit
        self.clock = clock
        self._final: list[tuple[str, dict[str, Any], list[int]]] = []  # stream, cursor, rows
        self.rounds_marked = 0

    def __getattr__(self, name: str) -> Any:  # stats and other extras of the wrapped source
        if name == "source":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        self._final.clear()  # a final page whose commit failed must not mark anything
        try:
            claimed = await claim_pending(self.sessionmaker, self.connector_id, stream)
        except Exception as exc:  # the inbox is an accelerator: never fail a round over it
            logger.warning("inbox claim failed: stream=%s error=%s", stream, type(exc).__name__)
            claimed = []
        async for page in self.source.pages(stream, cursor):
            if page.final and claimed:
                self._final.append((stream, page.cursor, claimed))
            yield page

    async def after_commit(self) -> None:
        if self._chained is not None:
            await self._chained()
        for waiting in list(self._final):
            stream, cursor, ids = waiting
            try:
                if not await self._committed(stream, cursor):
                    continue
                self._final.remove(waiting)
                await mark_handled(self.sessionmaker, ids, now=self.clock())
                self.rounds_marked += 1
            except Exception as exc:
                logger.warning("inbox rows not marked: count=%d error=%s", len(ids),
                               type(exc).__name__)  # fmt: skip

    async def _committed(self, stream: str, cursor: dict[str, Any]) -> bool:
        """Whether the stream's stored resume point is this final page's (a new deltaLink)."""
        async with self.sessionmaker() as session:
            stored = await cursors.load(session, self.connector_id, stream)
        return stored is not None and stored.round_id is None and stored.value == cursor


# ---- draining


class Triggerable(Protocol):
    def trigger(self, *, full: bool = False, reason: Trigger = Trigger.MANUAL) -> None: ...


class InboxDrainer:
    """Turns pending inbox rows into rounds: the local worker is woken at once; without one,
    the connector row carries the request to whichever replica runs the connector.

    Bursts coalesce twice: here (one wake per new batch of rows) and in the worker (requests
    made during a cycle become one more cycle). Under sustained traffic, rounds are asked for at
    most every `min_interval` seconds, so ingest does not turn into back-to-back rounds; a change
    after a quiet spell is asked for at once. Rows still pending after `retrigger_after` (the
    round failed, or another replica held the lease) are asked for again.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        workers: Mapping[str, Triggerable],
        *,
        poll: float = 1.0,
        debounce: float = 0.02,
        min_interval: float = 0.5,
        retrigger_after: float = 5.0,
        clock: Clock = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.workers = workers
        self.poll = poll
        self.debounce = debounce
        self.min_interval = min_interval
        self.retrigger_after = retrigger_after
        self.clock = clock
        self.triggers = 0
        self._wake = asyncio.Event()
        self._seen: dict[str, int] = {}  # connector -> highest row id already asked for
        self._asked_at: dict[str, float] = {}
        self._pruned = 0.0
        self._due: float | None = None  # a paced request waits until then

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            timeout = self.poll
            if self._due is not None:
                timeout = max(0.0, min(timeout, self._due - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()
            try:
                await self.drain_once()
                await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("inbox drain failed: error=%s", type(exc).__name__)
            await asyncio.sleep(self.debounce)

    async def drain_once(self) -> int:
        """Ask for a round of every connector with pending change rows; returns how many."""
        async with self.sessionmaker() as session:
            pending = (
                await session.execute(
                    select(WebhookInbox.connector_id, func.max(WebhookInbox.id))
                    .where(WebhookInbox.handled_at.is_(None), WebhookInbox.kind == CHANGE)
                    .group_by(WebhookInbox.connector_id)
                )
            ).all()
        asked = 0
        now = time.monotonic()
        self._due = None
        for connector_id, top in pending:
            since = now - self._asked_at.get(connector_id, -1e9)
            fresh = top > self._seen.get(connector_id, 0)
            if not (fresh or since >= self.retrigger_after):
                continue
            if since < self.min_interval:
                due = now + self.min_interval - since
                self._due = due if self._due is None else min(self._due, due)
                continue
            self._seen[connector_id] = max(top, self._seen.get(connector_id, 0))
            self._asked_at[connector_id] = now
            worker = self.workers.get(connector_id)
            if worker is not None:
                worker.trigger(reason=Trigger.NOTIFICATION)
            else:
                async with self.sessionmaker.begin() as session:
                    await request_sync(session, connector_id, full=False, now=self.clock())
            asked += 1
            self.triggers += 1
        return asked

    async def _prune(self) -> None:
        """Handled rows are kept a day for inspection, then deleted (hourly)."""
        now = time.monotonic()
        if now - self._pruned < 3600:
            return
        self._pruned = now
        async with self.sessionmaker.begin() as session:
            await session.execute(
                delete(WebhookInbox).where(WebhookInbox.handled_at < self.clock() - KEEP_HANDLED)
            )


async def pending_rows(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str | None = None
) -> int:
    async with sessionmaker() as session:
        stmt = (
            select(func.count()).select_from(WebhookInbox).where(WebhookInbox.handled_at.is_(None))
        )
        if connector_id is not None:
            stmt = stmt.where(WebhookInbox.connector_id == connector_id)
        return int(await session.scalar(stmt) or 0)

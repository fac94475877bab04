"""Run a connector: rounds of pages, each page committed together with its resume point.

A crash at any point resumes from the last committed page without loss or duplication (pages
are idempotent). Pages that already wait when one is written share its transaction (and the
last one's resume point); a transaction never waits on the source. Deletions wait in the guard
until the round ends; a full round's sweep happens only after its final page commits, so a
directory that vanishes mid-round never causes a sweep. A stop (cancellation) lets the page
being written commit, records the round as interrupted and releases the lease (see `stops`).
Every round that gets the lease leaves one row in the connector's run history (`runs`); a
paused connector runs no round.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import cursors, domain_conflicts, guard, leases, pagewriter, runs, stops
from app.connectors.base import Page, Source
from app.connectors.prefetch import Prefetch
from app.db.maintenance import analyze_grown, worth_checking
from app.db.sqlite_writer import is_database_busy
from app.directory import service
from app.directory.models import Connector
from app.errors import PermanentSourceError, SyncStateLost, TemporarySourceError
from app.logging import redact

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
PageCallback = Callable[[str, int, int], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RunnerOptions:
    guard: guard.GuardSettings = field(default_factory=guard.GuardSettings)
    owner: str = field(default_factory=leases.owner_id)
    max_attempts: int = 5  # temporary failures in a row before the cycle gives up
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    clock: Clock = utcnow
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(slots=True)
class CycleReport:
    ok: bool
    pages: int = 0
    objects: int = 0
    held_deletions: bool = False
    error: str | None = None
    stream: str | None = None  # the stream under way (or last run)
    taken_over_from: str | None = None  # a vanished process whose lease this cycle took over
    full: bool = False  # some stream ran a full round
    added: int = 0
    updated: int = 0
    deleted: int = 0
    held: int = 0  # deletions the guard holds when the round ends
    run_id: int | None = None  # its row in the run history

    def counts(self) -> runs.Counts:
        return runs.Counts(
            self.pages, self.objects, self.added, self.updated, self.deleted, self.held
        )


class ConnectorBusy(PermanentSourceError):
    """Another live process holds this connector's lease, until `until` unless it renews it."""

    def __init__(
        self, message: str, *, holder: str | None = None, until: datetime | None = None
    ) -> None:
        super().__init__(message)
        self.holder = holder
        self.until = until


class ConnectorPaused(PermanentSourceError):
    """The connector is paused (POST /v1/connectors/{id}/pause): it runs no round."""


async def run_cycle(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Source,
    *,
    full: bool = False,
    trigger: runs.Trigger = runs.Trigger.MANUAL,
    options: RunnerOptions | None = None,
    on_page: PageCallback | None = None,
    after_commit: Callable[[], Awaitable[None]] | None = None,
) -> CycleReport:
    """One round of every stream; records success or the error on the connector row and in
    its run history (as started by `trigger`).

    Raises ConnectorBusy when a live process holds the lease, ConnectorPaused when the
    connector is paused. Cancelled, it records the round as interrupted, releases the lease
    and re-raises the cancellation."""
    options = options or RunnerOptions()
    report = CycleReport(ok=False)
    try:
        return await _cycle(
            sessionmaker,
            connector_id,
            source,
            full,
            trigger,
            options,
            report,
            on_page,
            after_commit,
        )
    except asyncio.CancelledError:
        progress = {"stream": report.stream, "pages": report.pages, "objects": report.objects}
        await stops.finish_first(
            stops.record_interrupted(
                sessionmaker,
                connector_id,
                options.owner,
                now=options.clock(),
                progress=progress,
                run=(report.run_id, report.counts()) if report.run_id is not None else None,
            )
        )
        raise


async def _cycle(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Source,
    full: bool,
    trigger: runs.Trigger,
    options: RunnerOptions,
    report: CycleReport,
    on_page: PageCallback | None,
    after_commit: Callable[[], Awaitable[None]] | None,
) -> CycleReport:
    await stops.finish_first(
        _start(sessionmaker, connector_id, source, full, trigger, options, report)
    )
    try:
        for stream in source.streams:
            await _run_stream(
                sessionmaker,
                connector_id,
                source,
                stream,
                full,
                options,
                report,
                on_page,
                after_commit,
            )
    except (PermanentSourceError, TemporarySourceError, Exception) as exc:
        report.error = redact(f"{type(exc).__name__}: {exc}")
        logger.error("connector cycle failed: connector=%s error=%s", connector_id, report.error)
        await stops.finish_first(_record(sessionmaker, connector_id, source, options, report))
        return report
    report.ok = True
    await stops.finish_first(_record(sessionmaker, connector_id, source, options, report))
    return report


async def _start(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Source,
    full: bool,
    trigger: runs.Trigger,
    options: RunnerOptions,
    report: CycleReport,
) -> None:
    """Take the lease (from a vanished process of this host too) and say the round runs."""
    async with sessionmaker.begin() as session:
        if (await _connector(session, connector_id)).paused:
            raise ConnectorPaused(f"connector {connector_id} is paused")
        attempt = await leases.acquire(session, connector_id, options.owner, now=options.clock())
        if not attempt.claimed:
            until = attempt.expires_at.isoformat(timespec="seconds") if attempt.expires_at else "?"
            raise ConnectorBusy(
                f"connector {connector_id} is being synced by {attempt.holder or '?'} "
                f"(lease until {until})",
                holder=attempt.holder,
                until=attempt.expires_at,
            )
        if attempt.taken_from is not None:
            report.taken_over_from = attempt.taken_from
            logger.warning(
                "lease taken over from a process that is gone: connector=%s holder=%s",
                connector_id,
                attempt.taken_from,
            )
        # Overwrites a vanished holder's stale `running` (and closes its run history row).
        await _set_progress(session, connector_id, {"running": True, "full": full}, options)
        done = await cursors.completed_streams(session, connector_id)
        report.full = full or not set(source.streams) <= done
        report.run_id = await runs.start(
            session, connector_id, full=report.full, trigger=trigger, now=options.clock()
        )


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Source,
    options: RunnerOptions,
    report: CycleReport,
) -> None:
    async with sessionmaker.begin() as session:
        await _finish(session, connector_id, source, options, report)


async def _clear_cursor(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str, stream: str
) -> None:
    async with sessionmaker.begin() as session:
        await cursors.clear(session, connector_id, stream)


async def _run_stream(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Source,
    stream: str,
    full: bool,
    options: RunnerOptions,
    report: CycleReport,
    on_page: PageCallback | None,
    after_commit: Callable[[], Awaitable[None]] | None,
) -> None:
    failures = 0
    restarted = False
    report.stream = stream
    if full:  # forget the resume point first, so a retry after a failure stays a full round
        await stops.finish_first(_clear_cursor(sessionmaker, connector_id, stream))
    while True:
        try:
            await _run_round(
                sessionmaker, connector_id, source, stream, options, report, on_page, after_commit
            )
            return
        except SyncStateLost as exc:
            if restarted:
                raise
            logger.warning(
                "resume point lost, starting a full round: connector=%s stream=%s reason=%s",
                connector_id,
                stream,
                exc,
            )
            await stops.finish_first(_clear_cursor(sessionmaker, connector_id, stream))
            restarted = True
        except (TemporarySourceError, OperationalError) as exc:
            if not isinstance(exc, TemporarySourceError) and not is_database_busy(exc):
                raise  # a busy SQLite database (another process writes) is worth seconds
            failures += 1
            if failures >= options.max_attempts:
                raise
            delay = _backoff(failures, getattr(exc, "delay", None), options)
            logger.warning(
                "temporary error, retrying: connector=%s stream=%s delay=%.1fs error=%s",
                connector_id,
                stream,
                delay,
                redact(str(exc)),
            )
            await options.sleep(delay)  # then resume from the stored cursor


def _backoff(attempt: int, retry_after: float | None, options: RunnerOptions) -> float:
    """Honour Retry-After; otherwise capped exponential backoff with full jitter."""
    if retry_after is not None and retry_after > 0:
        return retry_after
    ceiling = min(options.backoff_cap, options.backoff_base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


async def _run_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Source,
    stream: str,
    options: RunnerOptions,
    report: CycleReport,
    on_page: PageCallback | None,
    after_commit: Callable[[], Awaitable[None]] | None,
) -> None:
    async with sessionmaker() as session:
        stored = await cursors.load(session, connector_id, stream)
        connector = await _connector(session, connector_id)
        ref = service.ConnectorRef.of(connector)
        # Only this round's runner (it holds the lease) adds held deletions, so once none are
        # pending, pages need not look for objects to release until the round holds some.
        holding = await guard.pending_count(session, connector_id) > 0
    if stored is None:
        round_id: str | None = str(uuid.uuid4())
        resume: dict[str, Any] | None = None
    else:
        round_id, resume = stored.round_id, stored.value
    report.full = report.full or round_id is not None
    logger.info(
        "round started: connector=%s stream=%s mode=%s",
        connector_id,
        stream,
        "full" if round_id else "incremental",
    )
    state = pagewriter.Round(ref, stream, round_id, options, report, holding)
    # The next pages are fetched and mapped while this one is written (network and parsing in
    # this process, the writes in the database's), outside any transaction.
    async with Prefetch(source.pages(stream, resume), depth=pagewriter.PREFETCH_PAGES) as upcoming:
        while True:
            page = await upcoming.next()  # where a stop lands: between pages
            if page is None:
                raise TemporarySourceError(f"stream {stream} ended without a final page")
            page = await stops.finish_first(
                _commit_pages(sessionmaker, state, page, upcoming, on_page, after_commit)
            )
            if page.final:
                return


async def _commit_pages(
    sessionmaker: async_sessionmaker[AsyncSession],
    state: pagewriter.Round,
    page: Page,
    upcoming: Prefetch,
    on_page: PageCallback | None,
    after_commit: Callable[[], Awaitable[None]] | None,
) -> Page:
    """Write `page` (and those waiting behind it) in one transaction; returns the last one."""
    connector_id, options, report = state.ref.id, state.options, state.report
    async with sessionmaker.begin() as session:
        if not await leases.claim(session, connector_id, options.owner, now=options.clock()):
            raise ConnectorBusy(f"lost the lease of connector {connector_id}")
        page, written = await pagewriter.write_batch(session, state, page, upcoming)
        await _set_progress(
            session,
            connector_id,
            {
                "running": True,
                "stream": state.stream,
                "pages": report.pages,
                "objects": report.objects,
                "full": state.round_id is not None,
            },
            options,
        )
    if page.final or any(worth_checking(n) for n in written):
        await analyze_grown(sessionmaker)
    if on_page is not None:
        for pages, objects in written.values():
            on_page(state.stream, pages, objects)
    if after_commit is not None:
        await after_commit()
    return page


async def _connector(session: AsyncSession, connector_id: str) -> Connector:
    connector = await session.get(Connector, connector_id)
    if connector is None:
        raise PermanentSourceError(f"connector {connector_id} does not exist")
    return connector


async def _set_progress(
    session: AsyncSession, connector_id: str, progress: dict[str, Any], options: RunnerOptions
) -> None:
    connector = await _connector(session, connector_id)
    connector.progress = (
        domain_conflicts.sticky(connector.progress)
        | progress
        | {"updated_at": options.clock().isoformat()}
    )
    connector.updated_at = options.clock()


async def _finish(
    session: AsyncSession,
    connector_id: str,
    source: Source,
    options: RunnerOptions,
    report: CycleReport,
) -> None:
    connector = await _connector(session, connector_id)
    now = options.clock()
    done = await cursors.completed_streams(session, connector_id)
    connector.first_round_done = connector.first_round_done or set(source.streams) <= done
    report.held = await guard.pending_count(session, connector_id)
    held = report.held > 0
    if report.ok:
        connector.last_success_at = now
        connector.last_error = None
        connector.state = "needs_approval" if held else "ready"
    else:
        connector.last_error = report.error
        connector.last_error_at = now
        connector.state = "error"
    if report.ok and not connector.first_round_done:
        connector.state = "initial_sync"
    connector.progress = domain_conflicts.sticky(connector.progress) | {
        "running": False,
        "pages": report.pages,
        "objects": report.objects,
        "finished_at": now.isoformat(),
    }
    connector.updated_at = now
    if report.run_id is not None:
        outcome = runs.Outcome.HELD if held else runs.Outcome.SUCCESS
        await runs.finish(
            session,
            report.run_id,
            outcome=outcome if report.ok else runs.Outcome.ERROR,
            counts=report.counts(),
            now=now,
            full=report.full,
            error=report.error,
        )
    await leases.release(session, connector_id, options.owner)


async def approve_deletions(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str, *, clock: Clock = utcnow
) -> int:
    """Apply every held deletion of a connector; returns how many were applied."""
    async with sessionmaker.begin() as session:
        connector = await _connector(session, connector_id)
        count = await guard.pending_count(session, connector_id)
        await guard.settle(
            session,
            service.ConnectorRef.of(connector),
            guard.GuardSettings(),
            now=clock(),
            approved=True,
        )
        if connector.state == "needs_approval":
            connector.state = "ready" if connector.first_round_done else "initial_sync"
        return count

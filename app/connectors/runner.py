"""Run a connector: rounds of pages, each page committed together with its resume point.

A crash at any point resumes from the last committed page without loss or duplication (pages
are idempotent). Pages that already wait when one is written share its transaction (and the
last one's resume point); a transaction never waits on the source. Deletions wait in the guard
until the round ends; a full round's sweep happens only after its final page commits, so a
directory that vanishes mid-round never causes a sweep.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import cursors, guard, leases
from app.connectors.base import Page, Source
from app.connectors.prefetch import Prefetch
from app.db.maintenance import analyze_grown, worth_checking
from app.db.sqlite_writer import is_database_busy
from app.directory import service
from app.directory.models import Connector, Domain, Tenant
from app.directory.records import ChangeSet
from app.directory.tenants import add_domain, remove_domain
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


class ConnectorBusy(PermanentSourceError):
    """Another process holds this connector's lease."""


async def run_cycle(
    sessionmaker: async_sessionmaker[AsyncSession],
    connector_id: str,
    source: Source,
    *,
    full: bool = False,
    options: RunnerOptions | None = None,
    on_page: PageCallback | None = None,
    after_commit: Callable[[], Awaitable[None]] | None = None,
) -> CycleReport:
    """One round of every stream; records success or the error on the connector row."""
    options = options or RunnerOptions()
    report = CycleReport(ok=False)
    async with sessionmaker.begin() as session:
        if not await leases.claim(session, connector_id, options.owner, now=options.clock()):
            connector = await session.get(Connector, connector_id)
            owner = connector.lease_owner if connector else "?"
            raise ConnectorBusy(f"connector {connector_id} is being synced by {owner}")
        await _set_progress(session, connector_id, {"running": True, "full": full}, options)
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
        async with sessionmaker.begin() as session:
            await _finish(session, connector_id, source, options, report)
        return report
    report.ok = True
    async with sessionmaker.begin() as session:
        await _finish(session, connector_id, source, options, report)
    return report


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
    if full:  # forget the resume point first, so a retry after a failure stays a full round
        async with sessionmaker.begin() as session:
            await cursors.clear(session, connector_id, stream)
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
            async with sessionmaker.begin() as session:
                await cursors.clear(session, connector_id, stream)
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
    logger.info(
        "round started: connector=%s stream=%s mode=%s",
        connector_id,
        stream,
        "full" if round_id else "incremental",
    )
    state = _Round(ref, stream, round_id, options, report, holding)
    # The next pages are fetched and mapped while this one is written (network and parsing in
    # this process, the writes in the database's), outside any transaction.
    async with Prefetch(source.pages(stream, resume), depth=PREFETCH_PAGES) as upcoming:
        while True:
            page = await upcoming.next()
            if page is None:
                raise TemporarySourceError(f"stream {stream} ended without a final page")
            async with sessionmaker.begin() as session:
                if not await leases.claim(
                    session, connector_id, options.owner, now=options.clock()
                ):
                    raise ConnectorBusy(f"lost the lease of connector {connector_id}")
                page, written = await _write_batch(session, state, page, upcoming)
                await _set_progress(
                    session,
                    connector_id,
                    {
                        "running": True,
                        "stream": stream,
                        "pages": report.pages,
                        "objects": report.objects,
                        "full": round_id is not None,
                    },
                    options,
                )
            if page.final or any(worth_checking(n) for n in written):
                await analyze_grown(sessionmaker)
            if on_page is not None:
                for pages, objects in written.values():
                    on_page(stream, pages, objects)
            if after_commit is not None:
                await after_commit()
            if page.final:
                return


@dataclass(slots=True)
class _Round:
    """One stream's round in progress: what each page is written with."""

    ref: service.ConnectorRef
    stream: str
    round_id: str | None
    options: RunnerOptions
    report: CycleReport
    holding: bool
    pages: int = 0

    async def write(self, session: AsyncSession, page: Page) -> None:
        self.holding = await _apply_page(
            session,
            self.ref,
            self.stream,
            page,
            self.round_id,
            self.options,
            self.options.clock(),
            self.report,
            holding=self.holding,
        )
        self.pages += 1
        self.report.pages += 1
        self.report.objects += len(page.changes.upserts) + len(page.changes.deletes)


async def _write_batch(
    session: AsyncSession, state: _Round, page: Page, upcoming: Prefetch
) -> tuple[Page, dict[int, tuple[int, int]]]:
    """Write `page` and the pages already waiting behind it, up to the batch limits.

    Returns the last page written and, for each page by its number in this round, the cycle's
    page and object counts once it was written (what `on_page` reports after the commit)."""
    started = time.monotonic()
    written: dict[int, tuple[int, int]] = {}
    while True:
        await state.write(session, page)
        written[state.pages] = (state.report.pages, state.report.objects)
        if page.final or not _batch_continues(upcoming, len(written), started):
            return page, written
        waiting = await upcoming.next()  # ready: returns at once
        if waiting is None:  # the producer ended without a final page; commit what came
            return page, written
        page = waiting


PREFETCH_PAGES = 6
# Pages already waiting when one is written join its transaction, up to these limits. Each
# commit writes every page it dirtied (SQLite: to the WAL), and a page of a bulk round dirties
# index pages all over the table; sharing one commit among several pages writes each once.
# The transaction never waits for the network: it commits as soon as no page is waiting.
BATCH_MAX_PAGES = 16
BATCH_MAX_SECONDS = 1.0


def _batch_continues(upcoming: Prefetch, pages: int, started: float) -> bool:
    return (
        upcoming.ready()
        and pages < BATCH_MAX_PAGES
        and time.monotonic() - started < BATCH_MAX_SECONDS
    )


async def _apply_page(
    session: AsyncSession,
    ref: service.ConnectorRef,
    stream: str,
    page: Page,
    round_id: str | None,
    options: RunnerOptions,
    now: datetime,
    report: CycleReport,
    *,
    holding: bool,
) -> bool:
    """Write one page; returns whether deletions may now be held for this connector."""
    changes = page.changes
    seen = [record.external_id for record in changes.upserts]
    if seen and holding:
        await guard.release_seen(session, ref.id, seen)
    if changes.deletes:
        await guard.hold(session, ref.id, changes.deletes, reason="removed", now=now)
        holding = True
    held = ChangeSet(
        upserts=changes.upserts,
        member_adds=changes.member_adds,
        member_removes=changes.member_removes,
        member_sets=changes.member_sets,
    )
    await service.apply(session, held, connector=ref, round_id=round_id, stream=stream, now=now)
    if page.domains is not None:
        await _reconcile_domains(session, ref, page.domains)
    if page.final:
        if round_id is not None:
            missing = await guard.sweep_candidates(session, ref.id, stream, round_id)
            if missing:
                logger.info(
                    "full round sweep: connector=%s stream=%s unseen=%d",
                    ref.id,
                    stream,
                    len(missing),
                )
                await guard.hold(session, ref.id, missing, reason="sweep", now=now)
        report.held_deletions = await guard.settle(session, ref, options.guard, now=now)
        holding = report.held_deletions
    await cursors.save(
        session, ref.id, stream, page.cursor, round_id=None if page.final else round_id, now=now
    )
    return holding


async def _reconcile_domains(
    session: AsyncSession, ref: service.ConnectorRef, names: list[str]
) -> None:
    """Make this source's accepted domains exactly `names`; domains added by hand stay."""
    tenant = await session.get(Tenant, ref.tenant_id)
    if tenant is None:
        return
    current = set(
        await session.scalars(
            select(Domain.name).where(
                Domain.tenant_id == ref.tenant_id, Domain.source == ref.kind.value
            )
        )
    )
    for name in sorted(set(names) - current):
        try:
            await add_domain(session, tenant, name, source=ref.kind.value)
        except Exception as exc:  # another tenant's domain: report, keep syncing
            logger.warning("domain not added: domain=%s reason=%s", name, exc)
    for name in sorted(current - set(names)):
        await remove_domain(session, name)


async def _connector(session: AsyncSession, connector_id: str) -> Connector:
    connector = await session.get(Connector, connector_id)
    if connector is None:
        raise PermanentSourceError(f"connector {connector_id} does not exist")
    return connector


async def _set_progress(
    session: AsyncSession, connector_id: str, progress: dict[str, Any], options: RunnerOptions
) -> None:
    connector = await _connector(session, connector_id)
    connector.progress = progress | {"updated_at": options.clock().isoformat()}
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
    held = await guard.pending_count(session, connector_id) > 0
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
    connector.progress = {
        "running": False,
        "pages": report.pages,
        "objects": report.objects,
        "finished_at": now.isoformat(),
    }
    connector.updated_at = now
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

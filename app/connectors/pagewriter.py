"""Writing a round's pages: each page's changes, held deletions, domains and resume point.

Pages already waiting when one is written join its transaction (up to the batch limits), so
one commit covers several pages; the runner decides when a batch starts and what follows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connectors import cursors, domain_conflicts, guard
from app.connectors.base import Page
from app.connectors.prefetch import Prefetch
from app.directory import service
from app.directory.addresses import normalize_domain
from app.directory.models import Domain, Tenant
from app.directory.records import ChangeSet
from app.directory.tenants import add_domain, remove_domain
from app.errors import Conflict, Malformed

if TYPE_CHECKING:
    from app.connectors.runner import CycleReport, RunnerOptions

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Round:
    """One stream's round in progress: what each page is written with."""

    ref: service.ConnectorRef
    stream: str
    round_id: str | None
    options: RunnerOptions
    report: CycleReport
    holding: bool
    pages: int = 0

    async def write(self, session: AsyncSession, page: Page) -> None:
        self.holding = await apply_page(
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


async def write_batch(
    session: AsyncSession, state: Round, page: Page, upcoming: Prefetch
) -> tuple[Page, dict[int, tuple[int, int]]]:
    """Write `page` and the pages already waiting behind it, up to the batch limits.

    Returns the last page written and, for each page by its number in this round, the cycle's
    page and object counts once it was written (what `on_page` reports after the commit)."""
    started = time.monotonic()
    written: dict[int, tuple[int, int]] = {}
    while True:
        await state.write(session, page)
        written[state.pages] = (state.report.pages, state.report.objects)
        if page.final or not batch_continues(upcoming, len(written), started):
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


def batch_continues(upcoming: Prefetch, pages: int, started: float) -> bool:
    return (
        upcoming.ready()
        and pages < BATCH_MAX_PAGES
        and time.monotonic() - started < BATCH_MAX_SECONDS
    )


async def apply_page(
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
    applied = await service.apply(
        session, held, connector=ref, round_id=round_id, stream=stream, now=now
    )
    report.added += applied.added
    report.updated += applied.updated
    if page.domains is not None:
        await reconcile_domains(session, ref, page.domains)
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
        tally = service.ApplyResult()
        report.held_deletions = await guard.settle(
            session, ref, options.guard, now=now, tally=tally
        )
        report.deleted += tally.deleted
        holding = report.held_deletions
    await cursors.save(
        session, ref.id, stream, page.cursor, round_id=None if page.final else round_id, now=now
    )
    return holding


async def reconcile_domains(
    session: AsyncSession, ref: service.ConnectorRef, names: list[str]
) -> None:
    """Make this source's accepted domains exactly `names`; domains added by hand stay. A
    domain another tenant owns is not taken: the connector's status names it and its owner."""
    tenant = await session.get(Tenant, ref.tenant_id)
    if tenant is None:
        return
    wanted: set[str] = set()
    for name in names:  # compared as stored: `Bücher.example` is `xn--bcher-kva.example`
        try:
            wanted.add(normalize_domain(name))
        except Malformed as exc:
            logger.warning("domain not added: domain=%s reason=%s", name, exc.message)
    current = set(
        await session.scalars(
            select(Domain.name).where(
                Domain.tenant_id == ref.tenant_id, Domain.source == ref.kind.value
            )
        )
    )
    owned_elsewhere = []
    for name in sorted(wanted - current):
        try:
            await add_domain(session, tenant, name, source=ref.kind.value)
        except Conflict as exc:  # another tenant's domain: report it, keep syncing the rest
            logger.warning("domain not added: domain=%s reason=%s", name, exc.message)
            owned_elsewhere.append(name)
    for name in sorted(current - wanted):
        await remove_domain(session, name)
    await domain_conflicts.record(session, ref.id, owned_elsewhere)

"""Fill the lookup index from the mirror and keep it current from the `changes` log.

A writer in this process calls `refresh()` right after its commit (its own change is visible at
once); a background loop polls every `poll_interval` for other processes' commits. If the
database cannot be read, every tenant turns TEMPFAIL until a refresh succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.stream import stream_rows
from app.directory.lookup import Entry, LookupIndex, TenantState, rid_key
from app.directory.models import Address, Change, Connector, Domain, Recipient, Tenant
from app.directory.records import SourceKind

logger = logging.getLogger(__name__)

RefreshHook = Callable[[AsyncConnection], Awaitable[None]]


class IndexSync:
    def __init__(
        self,
        index: LookupIndex,
        engine: AsyncEngine,
        *,
        max_staleness: timedelta = timedelta(hours=24),
        poll_interval: float = 0.25,
        hooks: Sequence[RefreshHook] = (),
    ) -> None:
        self.index = index
        self.engine = engine
        self.max_staleness = max_staleness
        self.poll_interval = poll_interval
        self.hooks = list(hooks)
        self._lock = asyncio.Lock()

    async def load(self, only: set[str] | None = None) -> None:
        """Build a complete new index off to the side, then swap it in.

        `only` restricts it to recipients owning those addresses (one-shot CLI lookups).
        """
        async with self._lock:
            try:
                await self._load(only)
            except Exception:
                self._mark_unhealthy()
                raise

    async def refresh(self) -> None:
        async with self._lock:
            try:
                if not self.index.loaded:
                    await self._load()
                else:
                    await self._refresh()
            except Exception:
                self._mark_unhealthy()
                raise

    async def refresh_after_write(self) -> None:
        """Make this process's own commit visible now; if that fails, the poll loop retries."""
        try:
            await self.refresh()
        except Exception as exc:
            logger.warning("index refresh after write failed: error=%s", type(exc).__name__)

    async def run(self) -> None:
        """Poll forever; failures are logged and turn lookups into tempfails, never crash."""
        failing = False
        while True:
            try:
                await self.refresh()
                if failing:
                    logger.info("index refresh recovered: seq=%d", self.index.last_seq)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    logger.error("index refresh failed, lookups defer: error=%s", exc)
                failing = True
            await asyncio.sleep(self.poll_interval)

    def _mark_unhealthy(self) -> None:
        self.index.healthy = False
        for tenant in self.index.tenants.values():
            tenant.healthy = False

    async def _load(self, only: set[str] | None = None) -> None:
        started, cpu_started = time.monotonic(), time.process_time()
        gc.unfreeze()  # let the collector see the previous load's objects again
        fresh = LookupIndex(self.index.options, clock=self.index.clock)
        async with self.engine.connect() as conn:
            last_seq = await conn.scalar(select(func.coalesce(func.max(Change.seq), 0)))
            await _load_tenants(conn, fresh, self.max_staleness, with_domains=True)
            batches = stream_rows(conn, _ALL_ADDRESSES) if only is None else _only(conn, only)
            current: list[tuple[Any, ...]] = []
            async for batch in batches:
                for row in batch:
                    if current and current[0][0] != row[0]:
                        fresh.put(_entry(fresh, current))
                        current = []
                    current.append(row)
            if current:
                fresh.put(_entry(fresh, current))
            for hook in self.hooks:
                await hook(conn)
        fresh.last_seq = int(last_seq or 0)
        fresh.loaded = True
        self._swap(fresh)
        del fresh, current
        _return_free_memory()
        index = self.index
        logger.info(
            "lookup index loaded: addresses=%d recipients=%d seq=%d elapsed=%.2fs cpu=%.2fs",
            index.address_count(),
            len(index.by_recipient),
            index.last_seq,
            time.monotonic() - started,
            time.process_time() - cpu_started,
        )

    def _swap(self, fresh: LookupIndex) -> None:
        index = self.index
        index.tables, index.by_recipient = fresh.tables, fresh.by_recipient
        index.domains, index.tenants = fresh.domains, fresh.tenants
        index.last_seq = fresh.last_seq
        index.loaded = index.healthy = True

    async def _refresh(self) -> None:
        index = self.index
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Change.seq, Change.recipient_id, Change.action)
                    .where(Change.seq > index.last_seq)
                    .order_by(Change.seq)
                    .limit(20_000)
                )
            ).all()
            domains_changed = any(action == "domain" for _, _, action in rows)
            if not domains_changed:
                await _load_tenants(conn, index, self.max_staleness, with_domains=False)
                ids = list(dict.fromkeys(rid for _, rid, _ in rows if rid is not None))
                for start in range(0, len(ids), 500):
                    await _reload_recipients(conn, index, ids[start : start + 500])
                for hook in self.hooks:
                    await hook(conn)
        if domains_changed:
            # Accepted domains decide which addresses count: rebuild off to the side.
            await self._load()
            return
        if rows:
            index.last_seq = rows[-1][0]
        index.healthy = True
        for tenant in index.tenants.values():
            tenant.healthy = True


async def _load_tenants(
    conn: AsyncConnection, index: LookupIndex, max_staleness: timedelta, *, with_domains: bool
) -> None:
    """(Re)read tenants and connector readiness into `index` (cheap: it runs on every poll);
    domains only for a fresh index, since they decide which addresses it holds."""
    # A tenant seen for the first time is published only once its readiness is read: in
    # between (an await) lookups and /readyz would find it "not ready" for no reason.
    tenants = dict(index.tenants)
    for tid, name in await conn.execute(select(Tenant.id, Tenant.name)):
        state = tenants.get(tid) or TenantState(tid, name)
        state.name = name
        tenants[tid] = state
    if with_domains:
        index.set_domains(
            {
                sys.intern(name): tenants[tid]
                for name, tid in (await conn.execute(select(Domain.name, Domain.tenant_id)))
            }
        )
    ready = dict.fromkeys(tenants, True)
    stale_after: dict[str, float | None] = dict.fromkeys(tenants)
    authoritative = [k.value for k in SourceKind if k.is_authoritative]
    rows = await conn.execute(
        select(Connector.tenant_id, Connector.first_round_done, Connector.last_success_at).where(
            Connector.kind.in_(authoritative)
        )
    )
    for tid, done, last_success in rows:
        if tid not in tenants:
            continue
        if not done or last_success is None:
            ready[tid] = False
            continue
        if max_staleness.total_seconds() > 0:
            limit = (last_success + max_staleness).timestamp()
            previous = stale_after[tid]
            stale_after[tid] = limit if previous is None else min(previous, limit)
    for tid, state in tenants.items():
        state.ready = ready[tid]
        state.stale_after = stale_after[tid]
    index.tenants.update(tenants)


def _return_free_memory() -> None:
    """Hand the old index's and the load's freed heap back to the OS (glibc keeps it otherwise),
    so RSS reflects the index actually in use; then freeze what is left, so the cyclic garbage
    collector stops walking a million long-lived objects (the index holds no cycles; frozen
    objects are still freed by reference counting when a reload drops them)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    gc.freeze()


_COLUMNS = (
    Recipient.id,
    Recipient.tenant_id,
    Recipient.kind,
    Recipient.enabled,
    Recipient.source,
    Address.address,
    Address.is_primary,
)
_ALL_ADDRESSES = (
    "SELECT r.id, r.tenant_id, r.kind, r.enabled, r.source, a.address, a.is_primary"
    " FROM recipients r JOIN addresses a ON a.recipient_id = r.id"
    " WHERE r.deleted_at IS NULL ORDER BY r.id"
)


async def _only(conn: AsyncConnection, addresses: set[str]) -> AsyncIterator[list[Any]]:
    owners = select(Address.recipient_id).where(Address.address.in_(sorted(addresses)))
    rows = await conn.execute(
        select(*_COLUMNS)
        .join(Address, Address.recipient_id == Recipient.id)
        .where(Recipient.deleted_at.is_(None), Recipient.id.in_(owners))
        .order_by(Recipient.id)
    )
    yield list(rows)


async def _reload_recipients(conn: AsyncConnection, index: LookupIndex, ids: list[str]) -> None:
    rows = await conn.execute(
        select(*_COLUMNS)
        .join(Address, Address.recipient_id == Recipient.id)
        .where(Recipient.id.in_(ids), Recipient.deleted_at.is_(None))
        .order_by(Recipient.id)
    )
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    for rid in ids:
        index.remove(rid_key(rid))
    for group in grouped.values():
        index.put(_entry(index, group))


def _entry(index: LookupIndex, rows: list[Any]) -> Entry:
    rid, tid, kind, enabled, source = rows[0][:5]
    addresses = [row[5] for row in rows]
    primary = next((row[5] for row in rows if row[6]), addresses[0])
    return Entry(rid, index.tenants[tid], primary, kind, bool(enabled), source, addresses)

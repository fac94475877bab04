"""Run synced connectors inside `roster serve`: on schedule, on request, one cycle at a time.

A request can come from this process (`trigger`, e.g. the webhook inbox) or from any replica
through the connector row (`sync_requested_at`, set by `POST /v1/connectors/{id}/sync`); the
lease in the runner makes sure only one replica works a connector at a time. A paused
connector (the `paused` column, set by any replica's API) runs no round: its worker looks at
the row before each round and, while paused, every `PAUSE_POLL` seconds; once resumed, the
round it missed runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.base import Source
from app.connectors.runner import ConnectorBusy, ConnectorPaused, RunnerOptions, run_cycle
from app.connectors.runs import Trigger
from app.db.sqlite_writer import DATABASE_BUSY_RETRY, is_database_busy
from app.directory.models import Connector

logger = logging.getLogger(__name__)

REQUEST_POLL = 1.0  # seconds between checks for sync requests made through the database
RETRY_FLOOR = 30.0
BUSY_RETRY = 30.0  # seconds between tries while another live process holds the lease
PAUSE_POLL = 5.0  # seconds between looks at a paused connector's row (resumed within 10 s)
# When requests of several kinds coalesce into one round, it is recorded as the first of these.
_PRECEDENCE = (Trigger.MANUAL, Trigger.NOTIFICATION, Trigger.STARTUP, Trigger.SCHEDULE)


class ConnectorWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        connector_id: str,
        source: Source,
        *,
        interval: float,
        options: RunnerOptions | None = None,
        after_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.connector_id = connector_id
        self.source = source
        self.interval = interval
        self.options = options or RunnerOptions()
        self.after_commit = after_commit
        self._wake = asyncio.Event()
        self._full = False
        self._asked: set[Trigger] = set()  # why the next cycle is asked for
        self.cycles = 0
        self.paused = False

    def trigger(self, *, full: bool = False, reason: Trigger = Trigger.MANUAL) -> None:
        """Ask for a cycle soon; requests made while one runs coalesce into one more cycle."""
        self._full = self._full or full
        self._asked.add(reason)
        self._wake.set()

    def _take_trigger(self, default: Trigger) -> Trigger:
        asked, self._asked = self._asked | {default}, set()
        return next(t for t in _PRECEDENCE if t in asked)

    async def run(self) -> None:
        try:
            await self._cycles()
        finally:  # shutdown: release the source's connections (Graph keeps one client)
            aclose = getattr(self.source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _cycles(self) -> None:
        delay = 0.0  # first cycle at once
        failures = 0
        trigger = Trigger.STARTUP
        while True:
            await self._wait(delay)
            trigger = self._take_trigger(trigger)
            if await self._is_paused():
                # Nothing runs and requests made meanwhile lapse; the round missed runs on resume.
                self._full, self._asked = False, set()
                trigger, delay = Trigger.SCHEDULE, PAUSE_POLL
                continue
            full, self._full = self._full, False
            try:
                report = await run_cycle(
                    self.sessionmaker,
                    self.connector_id,
                    self.source,
                    full=full,
                    trigger=trigger,
                    options=self.options,
                    after_commit=self.after_commit,
                )
            except ConnectorBusy as exc:
                logger.info("connector busy elsewhere: %s", exc)
                self._full = self._full or full  # the retry is the same request
                delay = _busy_delay(exc)
                continue
            except ConnectorPaused:  # paused between the look and the lease
                self._mark_paused(True)
                trigger, delay = Trigger.SCHEDULE, PAUSE_POLL
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("connector worker error: connector=%s", self.connector_id)
                report = None
                if is_database_busy(exc):  # another process was writing: again in seconds
                    self.cycles += 1
                    delay = DATABASE_BUSY_RETRY
                    continue
            self.cycles += 1
            trigger = Trigger.SCHEDULE
            if report is not None and report.ok:
                failures, delay = 0, self.interval
            else:
                failures += 1
                delay = min(self.interval, RETRY_FLOOR * 2 ** min(failures - 1, 6))

    async def _wait(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._wake.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(remaining, REQUEST_POLL))
            if await self._take_request():
                break
        self._wake.clear()

    async def _is_paused(self) -> bool:
        try:
            async with self.sessionmaker() as session:
                row = await session.get(Connector, self.connector_id)
                paused = row is not None and row.paused
        except Exception as exc:  # run_cycle looks again, under the lease
            logger.warning("cannot read the connector row: error=%s", type(exc).__name__)
            paused = False
        self._mark_paused(paused)
        return paused

    def _mark_paused(self, paused: bool) -> None:
        if paused != self.paused:
            logger.info(
                "connector %s: connector=%s", "paused" if paused else "resumed", self.connector_id
            )
        self.paused = paused

    async def _take_request(self) -> bool:
        """Claim a sync request stored on the connector row by any replica's API."""
        try:
            async with self.sessionmaker.begin() as session:
                row = await session.get(Connector, self.connector_id)
                if row is None or row.sync_requested_at is None:
                    return False
                self._full = self._full or row.full_sync_requested
                self._asked.add(Trigger.MANUAL)  # POST /v1/connectors/{id}/sync, any replica
                await session.execute(
                    update(Connector)
                    .where(Connector.id == self.connector_id)
                    .values(sync_requested_at=None, full_sync_requested=False)
                )
                return True
        except Exception as exc:
            logger.warning("cannot read sync requests: error=%s", type(exc).__name__)
            return False


def _busy_delay(exc: ConnectorBusy) -> float:
    """Try again when the holder's lease runs out (it may be gone), at most BUSY_RETRY away."""
    if exc.until is None:
        return BUSY_RETRY
    left = (exc.until - datetime.now(UTC)).total_seconds()
    return min(BUSY_RETRY, max(REQUEST_POLL, left + REQUEST_POLL))


async def request_sync(
    session: AsyncSession, connector_id: str, *, full: bool, now: datetime | None = None
) -> None:
    values: dict[str, object] = {"sync_requested_at": now or datetime.now(UTC)}
    if full:  # a later plain request must not cancel a pending full one
        values["full_sync_requested"] = True
    await session.execute(update(Connector).where(Connector.id == connector_id).values(**values))

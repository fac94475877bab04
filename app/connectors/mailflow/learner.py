"""The mail-flow learner: collects vouched-for senders in memory, writes them in batches.

The policy service (app.mailproto) calls `observe` for senders it has vetted. A policy request
arrives per RCPT (and at END-OF-MESSAGE when configured), so one message to 50
recipients would otherwise be 50 writes. Sightings are de-duplicated per message (Postfix's
`instance` attribute) and per flush, then written in one transaction every `flush_interval`,
which keeps the lookup path free of database work. Learning is best effort: a failed flush is
logged and dropped, and the next message from that sender counts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.mailflow import learning
from app.directory.addresses import normalize
from app.errors import Malformed, RosterError

logger = logging.getLogger(__name__)

MAX_INSTANCES = 50_000
MAX_PENDING = 10_000


@dataclass(slots=True)
class _Pending:
    evidence: str
    first: datetime
    last: datetime
    count: int = 0


class MailflowLearner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        min_count: int = 1,
        delimiter: str = "+",
        on_change: Callable[[], Awaitable[None]] | None = None,
        flush_interval: float = 0.5,
        reconcile_interval: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessionmaker = sessionmaker
        self.min_count = min_count
        self.delimiter = delimiter
        self.on_change = on_change
        self.flush_interval = flush_interval
        self.reconcile_interval = reconcile_interval
        self.clock = clock
        self._pending: dict[str, _Pending] = {}
        self._instances: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()

    def observe(self, sender: str, evidence: str, *, instance: str = "") -> bool:
        """Queue one sighting; False if it was a repeat for the same message, junk or dropped."""
        try:
            address = normalize(sender)
        except Malformed:
            return False
        if instance:
            key = (instance, address)
            if key in self._instances:
                return False
            self._instances[key] = None
            if len(self._instances) > MAX_INSTANCES:
                self._instances.popitem(last=False)
        now = self.clock()
        pending = self._pending.get(address)
        if pending is None:
            if len(self._pending) >= MAX_PENDING:
                logger.warning("learner queue full, sighting dropped: address=%s", address)
                return False
            pending = self._pending[address] = _Pending(evidence, now, now)
        pending.count += 1
        pending.last, pending.evidence = now, evidence
        self._wakeup.set()
        return True

    async def run(self) -> None:
        """Flush a batch at most every `flush_interval` and reconcile contradictions every
        `reconcile_interval`, forever; cancel to stop."""
        loop = asyncio.get_running_loop()
        next_reconcile = loop.time() + self.reconcile_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, next_reconcile - loop.time()))
            if self._wakeup.is_set():
                await asyncio.sleep(self.flush_interval)
                await self.flush()
            if loop.time() >= next_reconcile:
                await self.reconcile()
                next_reconcile = loop.time() + self.reconcile_interval

    async def reconcile(self) -> bool:
        """Apply contradictions the directory caused since the last sighting (see learning)."""
        try:
            async with self.sessionmaker.begin() as session:
                changed = await learning.reconcile(
                    session, now=self.clock(), delimiter=self.delimiter
                )
        except Exception:
            logger.exception("learned senders not reconciled")
            return False
        if changed and self.on_change is not None:
            await self.on_change()
        return changed

    async def flush(self) -> int:
        """Write everything queued so far; returns the number of addresses written."""
        async with self._flush_lock:
            self._wakeup.clear()
            batch, self._pending = self._pending, {}
            if not batch:
                return 0
            written, changed = 0, False
            try:
                async with self.sessionmaker.begin() as session:
                    for address, item in batch.items():
                        sighting = learning.Sighting(address, item.evidence, item.last, item.count)
                        try:
                            async with session.begin_nested():
                                outcome = await learning.record(
                                    session,
                                    sighting,
                                    min_count=self.min_count,
                                    delimiter=self.delimiter,
                                )
                        except RosterError as exc:  # domain removed meanwhile, and the like
                            logger.info("sighting not learned: address=%s reason=%s", address, exc)
                            continue
                        except IntegrityError:  # another replica created it at the same moment
                            logger.info("sighting raced another writer: address=%s", address)
                            continue
                        written += 1
                        changed = changed or outcome.recipients_changed
            except Exception:
                logger.exception("learned senders not written: addresses=%d", len(batch))
                return 0
            if changed and self.on_change is not None:
                await self.on_change()
            logger.debug("learned senders written: addresses=%d", written)
            return written

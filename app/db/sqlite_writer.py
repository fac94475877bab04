"""On SQLite, the writers of one process take turns instead of racing for the file lock.

SQLite has one write lock per database file, and writers that find it taken do not queue: each
polls under busy_timeout, so on a loaded machine one writer can lose every race until its timeout
runs out ("database is locked") while others keep winning. Here every write transaction of the
process first waits its turn on one asyncio lock per database file (waiting blocks no other
coroutine), then BEGIN IMMEDIATE finds the file lock free. Only a writer in another process
(`roster sync` or `roster import` next to `roster serve`) still meets busy_timeout.

The writer engine's dialect takes the turn in do_begin and gives it back in do_commit and
do_rollback; pool events give it back when a connection holding it is invalidated (a driver
error, a cancelled task), closed or checked in, so no way out of a transaction keeps it.
Read-only engines keep the plain dialect: in WAL mode readers never wait for writers.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import Engine

DRIVERNAME = "sqlite+roster_aiosqlite"
# A turn is normally a page batch (about a second) or one API write; a writer still waiting
# after this long gives up the way busy_timeout would, so a stuck transaction shows in the log.
QUEUE_TIMEOUT = 300.0
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# Seconds before a cycle that failed on a busy database runs again: the error already waited
# busy_timeout, so retrying soon is no storm, and a long backoff would only stall the mirror.
DATABASE_BUSY_RETRY = 2.0


@dataclass(slots=True)
class _Turn:
    """The writer lock of one database in one event loop, and who holds it."""

    loop: asyncio.AbstractEventLoop
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holder: Any = None  # the DBAPI connection whose transaction holds the lock
    task: asyncio.Task[Any] | None = None
    since: float = 0.0
    waiting: int = 0


class WriterQueue:
    """The writers of one SQLite database in this process, served one at a time in order.

    One lock per event loop: asyncio locks belong to a loop, and Alembic and tests run loops of
    their own next to the application's."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turn] = (
            weakref.WeakKeyDictionary()
        )
        self._mutex = threading.Lock()
        self._holders: dict[int, tuple[Any, _Turn]] = {}  # id(connection) -> it, its turn

    def _turn(self) -> _Turn:
        loop = asyncio.get_running_loop()
        with self._mutex:
            turn = self._turns.get(loop)
            if turn is None:
                turn = self._turns[loop] = _Turn(loop)
            return turn

    async def acquire(self, holder: Any) -> None:
        """Wait for this process's turn to write; `holder` is the connection that will write."""
        turn = self._turn()
        task = asyncio.current_task()
        if turn.holder is not None and task is not None and turn.task is task:
            # The same task waiting for itself would wait forever; no retry can cure it, so
            # this is no "database is locked" (is_database_busy).
            raise sqlite3.OperationalError(
                f"nested write transaction: this task already has one open on {self.name}; "
                f"finish it before starting another"
            )
        if turn.lock.locked() or turn.waiting:
            await self._wait(turn)
        else:  # free and nobody queued: taken at once
            await turn.lock.acquire()
        turn.holder, turn.task, turn.since = holder, task, time.monotonic()
        self._holders[id(holder)] = (holder, turn)

    async def _wait(self, turn: _Turn) -> None:
        turn.waiting += 1
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT):
                await turn.lock.acquire()
        except TimeoutError:
            held = time.monotonic() - turn.since
            raise sqlite3.OperationalError(
                f"database is locked: no turn to write to {self.name} within "
                f"{QUEUE_TIMEOUT:.0f} s (the current writer has held it for {held:.0f} s)"
            ) from None
        finally:
            turn.waiting -= 1

    def release(self, holder: Any) -> None:
        """Give the turn back if `holder` has it; safe to call more than once, from any thread."""
        entry = self._holders.get(id(holder))
        if entry is None or entry[0] is not holder:
            return  # most calls: a pool reset or check-in after the turn already came back
        turn = entry[1]
        if _in_loop_thread(turn.loop):
            self._give_back(turn, holder)
        elif not turn.loop.is_closed():  # e.g. a pool event from the garbage collector
            turn.loop.call_soon_threadsafe(self._give_back, turn, holder)

    def _give_back(self, turn: _Turn, holder: Any) -> None:
        if turn.holder is holder:
            self._holders.pop(id(holder), None)
            turn.holder, turn.task = None, None
            turn.lock.release()

    @property
    def waiting(self) -> int:
        """Writers of the running event loop waiting for their turn."""
        return self._turn().waiting

    @property
    def held(self) -> bool:
        """Whether a transaction of the running event loop has the turn."""
        return self._turn().holder is not None


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_queues: dict[str, WriterQueue] = {}
_queues_mutex = threading.Lock()


def writer_queue(database: str | None) -> WriterQueue:
    """The process's queue for a database file: every writer engine on that file shares it."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return WriterQueue(database or ":memory:")  # a private database per engine
    path = os.path.realpath(database)
    with _queues_mutex:
        queue = _queues.get(path)
        if queue is None:
            queue = _queues[path] = WriterQueue(path)
        return queue


class QueuedWriterDialect(SQLiteDialect_aiosqlite):
    """aiosqlite whose transactions wait their turn on a `WriterQueue`, then BEGIN IMMEDIATE.

    Writers take the file lock up front: a deferred transaction that reads and then writes
    fails at once with SQLITE_BUSY when another writer committed meanwhile."""

    supports_statement_cache = True
    writer_queue: WriterQueue | None = None  # set by `install`

    def do_begin(self, dbapi_connection: Any) -> None:
        queue, raw = self._queue(), _raw(dbapi_connection)
        # run_async: SQLAlchemy's documented way to await from its synchronous layer.
        raw.run_async(lambda _driver: queue.acquire(raw))
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
            finally:
                cursor.close()
        except BaseException:
            queue.release(raw)
            raise

    def do_commit(self, dbapi_connection: Any) -> None:
        try:
            super().do_commit(dbapi_connection)  # type: ignore[no-untyped-call]
        finally:
            self._queue().release(_raw(dbapi_connection))

    def do_rollback(self, dbapi_connection: Any) -> None:
        try:
            super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]
        finally:
            self._queue().release(_raw(dbapi_connection))

    def _queue(self) -> WriterQueue:
        if self.writer_queue is None:
            raise RuntimeError("QueuedWriterDialect used without install()")
        return self.writer_queue


def _raw(connection: Any) -> Any:
    """The DBAPI connection under a pool proxy (dialect methods get either)."""
    return getattr(connection, "dbapi_connection", connection)


registry.register(DRIVERNAME.replace("+", "."), __name__, QueuedWriterDialect.__name__)


def install(engine: Engine, queue: WriterQueue) -> None:
    """Attach `queue` to an engine made with DRIVERNAME, and give the turn back whenever the
    pool lets go of a connection that still holds it."""
    dialect = engine.dialect
    if not isinstance(dialect, QueuedWriterDialect):
        raise TypeError(f"{engine.url.drivername} engines have no writer queue")
    dialect.writer_queue = queue

    def give_back(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            queue.release(dbapi_connection)

    for name in ("invalidate", "close", "close_detached", "checkin"):
        event.listen(engine, name, give_back)


def is_database_busy(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's busy/locked error (what SQLAlchemy wraps, or the driver's):
    another writer had the database, and the same work succeeds a moment later."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "orig", None)):
            if isinstance(candidate, sqlite3.OperationalError) and _busy(candidate):
                return True
        current = current.__cause__
    return False


def _busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    message = str(error)
    return "database is locked" in message or "database table is locked" in message

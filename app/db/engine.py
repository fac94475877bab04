"""Engines and sessionmakers; SQLite gets foreign keys, WAL, a busy timeout and one writer at a
time per process (app/db/sqlite_writer.py)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.db import sqlite_writer
from app.db.urls import async_database_url

BUSY_TIMEOUT = 30.0  # seconds; `?timeout=N` in a SQLite URL overrides it


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, read_only: bool = False, **kwargs: Any) -> AsyncEngine:
    """`read_only` SQLite engines begin deferred transactions, so readers never wait on writers;
    the others queue their transactions behind one writer lock per database file.

    JSON columns (recipient attributes, connector progress) go through orjson: the standard
    library's encoder was ~1 µs of every bulk-written row."""
    url = async_database_url(url)
    kwargs.setdefault("json_serializer", _json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, read_only=read_only, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Key batches are `= ANY(array)` (app/db/sets.py), so the same statement runs with
        # arrays of any length while a bulk round grows the tables under it. A generic plan
        # made while a table was small kept filtering a whole tenant's addresses for every
        # batch (measured: 0.5 s a query); a fresh plan per execution costs ~0.1 ms.
        cursor = dbapi_connection.cursor()
        cursor.execute("SET plan_cache_mode = force_custom_plan")
        cursor.close()
        dbapi_connection.commit()


def _sqlite_engine(url: str, *, read_only: bool, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    busy_timeout = float(parsed.query.get("timeout", BUSY_TIMEOUT))  # type: ignore[arg-type]
    if not read_only:  # aiosqlite, whose transactions wait their turn to write
        parsed = parsed.set(drivername=sqlite_writer.DRIVERNAME)
    engine = create_async_engine(parsed, connect_args={"timeout": busy_timeout}, **kwargs)
    if not read_only:
        queue = sqlite_writer.writer_queue(parsed.database)
        sqlite_writer.install(engine.sync_engine, queue)  # it begins writer transactions
    _configure_sqlite(engine, read_only=read_only, busy_timeout=busy_timeout)
    return engine


def _configure_sqlite(engine: AsyncEngine, *, read_only: bool, busy_timeout: float) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself so SAVEPOINT works (SQLAlchemy docs, "Serializable
        # isolation / Savepoints / Transactional DDL" for pysqlite).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if not read_only:
            # A 2 MB page cache (the default) makes inserts into million-row indexes read from
            # the OS over and over; 128 MB plus memory-mapped reads keep full rounds linear.
            # Not for the index reader: it scans once, and a mapped file would count in RSS.
            cursor.execute("PRAGMA cache_size=-131072")
            cursor.execute("PRAGMA mmap_size=1073741824")
            cursor.execute("PRAGMA temp_store=MEMORY")
            # Checkpoint every ~100 MB of WAL instead of every 4 MB: a page of a bulk round
            # dirties thousands of index pages, and checkpointing after nearly every commit
            # wrote each of them twice (measured: 1M edges 38 s -> 20 s). The WAL file is cut
            # back to 64 MB after each checkpoint.
            cursor.execute("PRAGMA wal_autocheckpoint=25000")
            cursor.execute("PRAGMA journal_size_limit=67108864")
        cursor.close()

    if read_only:  # writers begin in the queued dialect, after their turn came

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"

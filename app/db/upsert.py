"""Dialect-aware bulk writes, the one place that knows SQLite from PostgreSQL.

A full directory round writes hundreds of thousands of rows. PostgreSQL executemany through
SQLAlchemy costs ~47 µs a row, so large batches go through COPY instead (into the table, or
into a temporary table followed by INSERT ... SELECT ... ON CONFLICT DO NOTHING when duplicates
must be skipped). On SQLite, large batches go straight to the driver's executemany as tuples:
SQLAlchemy's per-row parameter processing cost ~2 µs a row on the event-loop thread, which
also produces the next page.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.sets import is_postgresql

COPY_THRESHOLD = 200  # rows; below this a plain executemany is cheaper than COPY's set-up


def _insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def bulk_insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if len(rows) >= COPY_THRESHOLD:
        if is_postgresql(session):
            await _copy(session, table, table.name, rows)
        else:
            await _sqlite_executemany(session, table, rows, ignore=False)
        return
    await session.execute(table.insert(), rows)


async def insert_ignore(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose key already exists."""
    if not rows:
        return
    if len(rows) < COPY_THRESHOLD:
        await session.execute(_insert(session, table).on_conflict_do_nothing(), rows)
        return
    if not is_postgresql(session):
        await _sqlite_executemany(session, table, rows, ignore=True)
        return
    if await _copy_unless_duplicate(session, table, rows):
        return
    staging = f"roster_staging_{table.name}"
    columns = ", ".join(f'"{name}"' for name in rows[0])
    driver = await _driver(session)
    async with driver.cursor() as cursor:
        await cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" '
            f'(LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP'
        )
    await _copy(session, table, staging, rows)
    # Identifiers below come from the table metadata, never from input. (Sorting the rows by
    # key first was measured slower: the sort costs more than the page locality saves.)
    async with driver.cursor() as cursor:
        await cursor.execute(
            f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '  # noqa: S608
            f'FROM "{staging}" ON CONFLICT DO NOTHING'
        )
        await cursor.execute(f'DELETE FROM "{staging}"')  # noqa: S608


async def _copy_unless_duplicate(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]]
) -> bool:
    """COPY straight into the table inside a savepoint; False (and nothing written) when a row
    already exists. Most large batches are new rows (a full round's pages): they skip the
    staging table and ON CONFLICT's speculative inserts (~30% of the server's time per row);
    replays fall back to the careful path."""
    driver = await _driver(session)
    await driver.execute("SAVEPOINT roster_copy")
    try:
        await _copy(session, table, table.name, rows)
    except psycopg.errors.UniqueViolation:
        await driver.execute("ROLLBACK TO SAVEPOINT roster_copy")
        return False
    await driver.execute("RELEASE SAVEPOINT roster_copy")
    return True


async def upsert(
    session: AsyncSession,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    keys: list[str],
    update: list[str],
) -> None:
    if not rows:
        return
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={name: getattr(stmt.excluded, name) for name in update}
    )
    await session.execute(stmt, rows)


async def _driver(session: AsyncSession) -> Any:
    """The driver's connection (psycopg or aiosqlite) under the session, inside the session's
    own transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def _sqlite_executemany(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], *, ignore: bool
) -> None:
    """executemany on the aiosqlite connection itself, values converted by each column's own
    bind processor (datetimes, JSON, booleans are stored exactly as SQLAlchemy stores them)."""
    names = list(rows[0])
    dialect = session.get_bind().dialect
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    ]
    values = _getter(names)
    if any(processors):
        params = [
            tuple(
                value if process is None else process(value)
                for process, value in zip(processors, values(row), strict=True)
            )
            for row in rows
        ]
    else:
        params = [values(row) for row in rows]
    columns = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join("?" for _ in names)
    conflict = " ON CONFLICT DO NOTHING" if ignore else ""
    driver = await _driver(session)
    await driver.executemany(
        f'INSERT INTO "{table.name}" ({columns}) VALUES ({marks}){conflict}',  # noqa: S608
        params,
    )


async def _copy(
    session: AsyncSession, table: Table, target: str, rows: list[dict[str, Any]]
) -> None:
    """COPY rows in text format; psycopg formats and escapes each row in C (~3 µs a row,
    against ~25 µs for building the lines in Python)."""
    names = list(rows[0])
    values = _getter(names)
    json_positions = [i for i, name in enumerate(names) if isinstance(table.c[name].type, JSON)]
    columns = ", ".join(f'"{name}"' for name in names)
    driver = await _driver(session)
    async with (
        driver.cursor() as cursor,
        cursor.copy(f'COPY "{target}" ({columns}) FROM STDIN') as copy,
    ):
        for row in rows:
            fields = values(row)
            if json_positions:
                fields = list(fields)
                for i in json_positions:
                    if fields[i] is not None:
                        fields[i] = orjson.dumps(fields[i]).decode()
            await copy.write_row(fields)


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row dict's values in `names` order, as a tuple (itemgetter runs in C)."""
    if len(names) == 1:
        return lambda row: (row[names[0]],)
    return itemgetter(*names)

"""Dialect-aware bulk writes, the one place that knows SQLite from PostgreSQL.

A full directory round writes hundreds of thousands of rows. PostgreSQL executemany through
SQLAlchemy costs ~47 µs a row, so large batches go through COPY instead (into the table, or
into a temporary table followed by INSERT ... SELECT ... ON CONFLICT DO NOTHING when duplicates
must be skipped). On SQLite, large batches go straight to the driver's executemany as tuples:
SQLAlchemy's per-row parameter processing cost ~2 µs a row on the event-loop thread, which
also produces the next page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, DateTime, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from app.db.base import UTCDateTime
from app.db.sets import is_postgresql

COPY_THRESHOLD = 200  # rows; below this a plain executemany is cheaper than COPY's set-up


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows as value tuples in `names` order: for the largest batches (a million membership
    edges), where building a dict per row and taking it apart again costs more than the write."""

    names: Sequence[str]
    values: list[tuple[Any, ...]]

    @classmethod
    def of(cls, rows: list[dict[str, Any]] | Rows) -> Rows:
        if isinstance(rows, Rows):
            return rows
        names = list(rows[0]) if rows else []
        return cls(names, list(map(_getter(names), rows)))

    def __len__(self) -> int:
        return len(self.values)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.names, row, strict=True)) for row in self.values]


def _insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def bulk_insert(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]] | Rows
) -> None:
    if not rows:
        return
    if len(rows) < COPY_THRESHOLD:
        await session.execute(table.insert(), _dicts(rows))
        return
    if is_postgresql(session):
        await _copy(session, table, table.name, Rows.of(rows))
    else:
        await _sqlite_executemany(session, table, Rows.of(rows), ignore=False)


async def insert_ignore(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]] | Rows
) -> None:
    """Insert rows, skipping those whose key already exists."""
    if not rows:
        return
    if len(rows) < COPY_THRESHOLD:
        await session.execute(_insert(session, table).on_conflict_do_nothing(), _dicts(rows))
        return
    rows = Rows.of(rows)
    if not is_postgresql(session):
        await _sqlite_executemany(session, table, rows, ignore=True)
        return
    if await _copy_unless_duplicate(session, table, rows):
        return
    staging = f"roster_staging_{table.name}"
    columns = ", ".join(f'"{name}"' for name in rows.names)
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


def _dicts(rows: list[dict[str, Any]] | Rows) -> list[dict[str, Any]]:
    return rows.dicts() if isinstance(rows, Rows) else rows


async def _copy_unless_duplicate(session: AsyncSession, table: Table, rows: Rows) -> bool:
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
    session: AsyncSession, table: Table, rows: Rows, *, ignore: bool
) -> None:
    """executemany on the aiosqlite connection itself, values converted by each column's own
    bind processor (datetimes, JSON, booleans are stored exactly as SQLAlchemy stores them)."""
    names = rows.names
    dialect = session.get_bind().dialect
    processors = [_column_processor(table.c[name].type, dialect) for name in names]
    params = rows.values
    if params and any(processors):  # by column: map and zip run in C, a per-value loop did not
        columns = [
            column if process is None else list(map(process, column))
            for process, column in zip(processors, zip(*params, strict=True), strict=True)
        ]
        params = list(zip(*columns, strict=True))
    column_list = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join("?" for _ in names)
    conflict = " ON CONFLICT DO NOTHING" if ignore else ""
    driver = await _driver(session)
    await driver.executemany(
        f'INSERT INTO "{table.name}" ({column_list}) VALUES ({marks}){conflict}',  # noqa: S608
        params,
    )


def _column_processor(
    column_type: TypeEngine[Any], dialect: Dialect
) -> Callable[[Any], Any] | None:
    """The column's bind processor; for date-times, remembering its answers: a page's rows
    share a handful of timestamps, and formatting each cost ~5 µs a row."""
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is None or not isinstance(column_type, DateTime | UTCDateTime):
        return process
    formatted: dict[Any, Any] = {}

    def remembered(value: Any) -> Any:
        try:
            return formatted[value]
        except KeyError:
            formatted[value] = result = process(value)
            return result

    return remembered


async def _copy(session: AsyncSession, table: Table, target: str, rows: Rows) -> None:
    """COPY rows in text format; psycopg formats and escapes each row in C (~3 µs a row,
    against ~25 µs for building the lines in Python)."""
    names = rows.names
    json_positions = [i for i, name in enumerate(names) if isinstance(table.c[name].type, JSON)]
    columns = ", ".join(f'"{name}"' for name in names)
    driver = await _driver(session)
    async with (
        driver.cursor() as cursor,
        cursor.copy(f'COPY "{target}" ({columns}) FROM STDIN') as copy,
    ):
        for values in rows.values:
            if not json_positions:
                await copy.write_row(values)
                continue
            fields = list(values)
            for i in json_positions:
                if fields[i] is not None:
                    fields[i] = orjson.dumps(fields[i]).decode()
            await copy.write_row(fields)


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row dict's values in `names` order, as a tuple (itemgetter runs in C)."""
    if len(names) == 1:
        return lambda row: (row[names[0]],)
    return itemgetter(*names)

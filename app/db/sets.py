"""`column IN (values)` for batches of keys, in the shape each database handles best.

On PostgreSQL an IN list of 500 parameters is a new statement for every length: SQLAlchemy
renders 500 bind casts, psycopg re-parses the text (its query cache stops at 50 parameters)
and the server parses it afresh (measured ~10 ms a query during a 100k-row import).
`= ANY(array)` is one parameter and one statement text, prepared once; the server still plans
each execution for the array it gets (app/db/engine.py). SQLite has no arrays; its IN lists
stay, in chunks well under its bound-variable limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

T = TypeVar("T")

SQLITE_CHUNK = 500
POSTGRESQL_CHUNK = 10_000


def is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def chunks(session: AsyncSession, items: Iterable[T]) -> Iterator[Sequence[T]]:
    """`items` in batches sized for one `one_of` each."""
    items = items if isinstance(items, Sequence) else list(items)
    size = POSTGRESQL_CHUNK if is_postgresql(session) else SQLITE_CHUNK
    for start in range(0, len(items), size):
        yield items[start : start + size]


def one_of(
    session: AsyncSession,
    column: ColumnElement[Any] | QueryableAttribute[Any],
    values: Sequence[Any],
) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(:array)`."""
    if is_postgresql(session):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)

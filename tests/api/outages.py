"""Real outages for API tests: a database nothing listens on, swapped in where a test needs it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.db.engine import create_engine

DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/gone"  # nothing listens on port 1


@contextlib.asynccontextmanager
async def index_cut_off(app: Any) -> AsyncIterator[None]:
    """The index poller loses its database: lookups tempfail and /readyz says unavailable.

    One refresh is run against the dead database before the body starts (it waits for any poll
    in flight), so the index is unhealthy from the first request on, and every later poll fails
    the same way until the database is given back.
    """
    sync = app.app.app.state.index_sync
    good, dead = sync.engine, create_engine(DEAD_DATABASE)
    sync.engine = dead
    try:
        with pytest.raises(Exception):  # noqa: B017, PT011 - any connection error will do
            await sync.refresh()
        assert not sync.index.healthy
        yield
    finally:
        sync.engine = good
        await dead.dispose()
        await sync.refresh()

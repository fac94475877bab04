"""`roster connectors pause|resume NAME`: operational state on the connector row.

Works straight on the database; a running `roster serve` (every replica) sees the change
before its next round, within 10 s, without a restart. NAME is the id, `TENANT/NAME`, or a
name unique across tenants.
"""

from __future__ import annotations

from app.connectors import status
from app.db.engine import create_engine, create_sessionmaker
from app.errors import NotFound
from app.settings import Settings


async def set_paused(settings: Settings, connector: str, *, paused: bool) -> str:
    """Pause or resume `connector`; returns what to tell the operator."""
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            row = await status.find(session, connector)
            if row is None:
                raise NotFound(f"no connector {connector!r}")
            was = row.paused
            await status.set_paused(session, row, paused)
            name = row.name
    finally:
        await engine.dispose()
    if was == paused:
        return f"{name}: already {'paused' if paused else 'running'}"
    if paused:
        return f"{name}: paused; it runs no round until roster connectors resume {name}"
    return f"{name}: resumed; its next round starts within 10 s"

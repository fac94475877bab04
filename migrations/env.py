"""Alembic environment: URL from Settings (or a connection handed in by tests and the CLI)."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from app.connectors import runs as run_models  # noqa: F401  (registers the tables)
from app.connectors.graph import models as graph_models  # noqa: F401
from app.connectors.mailflow import models as mailflow_models  # noqa: F401
from app.connectors.spreadsheet import models as spreadsheet_models  # noqa: F401
from app.db.base import Base
from app.db.engine import create_engine
from app.directory import models  # noqa: F401
from app.settings import Settings

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


def run_migrations_online() -> None:
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.attributes.get("url") or Settings().database_url
    asyncio.run(_run_async(url))


def run_migrations_offline() -> None:
    url = config.attributes.get("url") or Settings().database_url
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

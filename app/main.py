"""create_app(settings): the HTTP API and the lookup index it answers from.

Nothing connects at import time; engines are created here (they connect lazily) and the index is
loaded in the lifespan, so one test run can build apps on SQLite and PostgreSQL side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from app import __version__
from app.api.errors import install_error_handlers
from app.api.limits import BodySizeLimit
from app.api.lookup_http import LookupFastPath
from app.api.metrics import Metrics
from app.api.openapi import install_openapi
from app.api.routes import apikeys as apikey_routes
from app.api.routes import auth as auth_routes
from app.api.routes import (
    changes,
    connectors,
    domains,
    graph_notifications,
    groups,
    health,
    learned,
    lookup,
    tenants,
    users,
)
from app.api.routes import imports as import_routes
from app.api.routes.graph_notifications import GraphWebhookFastPath
from app.apikeys import KeyCache
from app.connectors.graph.realtime import build_receiver, start_realtime
from app.db.engine import create_engine, create_sessionmaker
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex, LookupOptions
from app.mailproto.listeners import MailListeners
from app.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    engine = create_engine(settings.database_url)
    reader = create_engine(settings.database_url, read_only=True)
    index = LookupIndex(
        LookupOptions(
            delimiter=settings.recipient_delimiter, reject_disabled=settings.reject_disabled
        )
    )
    keys = KeyCache(reader)
    index_sync = IndexSync(
        index,
        reader,
        max_staleness=settings.max_staleness,
        poll_interval=settings.index_poll_interval,
        hooks=[keys.reload],
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await index_sync.load()
        except Exception as exc:
            # Keep serving: lookups answer tempfail until the poll loop succeeds.
            logger.error("initial index load failed, lookups defer: error=%s", exc)
        poller = asyncio.create_task(index_sync.run(), name="index-sync")
        app.state.tasks = [poller]
        if settings.run_connectors:
            app.state.tasks += await start_connector_workers(app, settings)
            app.state.tasks += await start_realtime(
                app.state.graph_webhooks, app.state.sessionmaker, settings, app.state.workers
            )
        app.state.mail = await MailListeners.start(
            settings, index, app.state.sessionmaker, index_sync
        )
        try:
            yield
        finally:
            await app.state.mail.aclose()
            for task in app.state.tasks:
                task.cancel()
            await asyncio.gather(*app.state.tasks, return_exceptions=True)
            await app.state.graph_webhooks.close()
            await engine.dispose()
            await reader.dispose()

    app = FastAPI(
        title="Roster",
        version=__version__,
        summary="Valid-recipient lookups for mail gateways, mirrored from your directory",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.index = index
    app.state.index_sync = index_sync
    app.state.keys = keys
    app.state.workers = {}
    app.state.graph_webhooks = build_receiver(app.state.sessionmaker, settings)
    app.state.metrics = Metrics()
    install_error_handlers(app)
    install_openapi(app)
    for module in (lookup, users, groups, domains, tenants, changes, connectors, health, learned):
        app.include_router(module.router)
    app.include_router(auth_routes.router)
    app.include_router(apikey_routes.router)
    app.include_router(import_routes.router)
    app.include_router(graph_notifications.router)
    return app


async def start_connector_workers(app: FastAPI, settings: Settings) -> list[asyncio.Task[None]]:
    """One worker per directory configured in the environment (ROSTER_GRAPH__*, ROSTER_LDAP__*)."""
    from app.connectors.graph.inbox import InboxAwareSource
    from app.connectors.guard import GuardSettings
    from app.connectors.registry import build_source, ensure_env_connectors, poll_interval
    from app.connectors.runner import RunnerOptions
    from app.connectors.worker import ConnectorWorker

    async with app.state.sessionmaker.begin() as session:
        rows = await ensure_env_connectors(session, settings)
    options = RunnerOptions(
        guard=GuardSettings(settings.delete_threshold, settings.delete_threshold_percent)
    )
    tasks = []
    for row in rows:
        source = build_source(settings, row)
        after_commit = app.state.index_sync.refresh_after_write
        if row.kind == "graph":  # its rounds mark the webhook inbox rows they cover
            inbox_aware = InboxAwareSource(
                source, app.state.sessionmaker, row.id, after_commit=after_commit
            )
            source, after_commit = inbox_aware, inbox_aware.after_commit
        worker = ConnectorWorker(
            app.state.sessionmaker,
            row.id,
            source,
            interval=poll_interval(settings, row),
            options=options,
            after_commit=after_commit,
        )
        app.state.workers[row.id] = worker
        tasks.append(asyncio.create_task(worker.run(), name=f"connector-{row.name}"))
        logger.info("connector worker started: connector=%s kind=%s", row.name, row.kind)
    return tasks


def create_asgi(settings: Settings) -> Any:
    """The app as `roster serve` runs it: lookup fast path, body limit, then FastAPI."""
    app = create_app(settings)
    return LookupFastPath(
        BodySizeLimit(
            GraphWebhookFastPath(app, app.state.graph_webhooks, max_bytes=settings.max_body_bytes),
            max_bytes=settings.max_body_bytes,
            # multipart framing on top of the file; the route checks the file itself
            routes={"/v1/imports": settings.max_import_bytes + 65_536},
        ),
        app.state.index,
        app.state.keys,
        app.state.metrics,
    )

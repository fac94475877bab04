"""Wiring Graph change notifications into `roster serve` and the CLI: the webhook receiver, the
inbox drainer and one subscription manager per Graph connector; listing and removing the
recorded subscriptions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.graph.config import GraphSettings
from app.connectors.graph.inbox import (
    InboxDrainer,
    InboxWriter,
    Triggerable,
    WebhookReceiver,
    utcnow,
)
from app.connectors.graph.models import GraphSubscription
from app.connectors.graph.notifications import SubscriptionRegistry
from app.connectors.graph.secrets import ClientStateCipher, SecretKeyError
from app.connectors.graph.subscription_client import (
    GraphSubscriptionClient,
    aware,
    subscription_client_factory,
)
from app.connectors.graph.subscriptions import (
    Clock,
    ManagerOptions,
    SubscriptionManager,
    webhook_urls,
)
from app.connectors.ldap.config import LdapSettings

logger = logging.getLogger(__name__)


class RealtimeSettings(Protocol):
    """What the webhook wiring reads; `app.settings.Settings` is one (this layer is below it)."""

    @property
    def graph(self) -> GraphSettings | None: ...

    @property
    def ldap(self) -> LdapSettings | None: ...

    @property
    def public_url(self) -> str | None: ...

    @property
    def secret_key(self) -> SecretStr | None: ...


def build_receiver(
    sessionmaker: async_sessionmaker[AsyncSession], settings: RealtimeSettings
) -> WebhookReceiver:
    """The webhook routes' state; connects nothing (the writer starts on first use)."""
    cipher = None
    if settings.secret_key is not None:
        try:
            cipher = ClientStateCipher(settings.secret_key)
        except SecretKeyError as exc:
            logger.error("graph webhooks disabled: %s", exc.message)
    return WebhookReceiver(SubscriptionRegistry(sessionmaker, cipher), InboxWriter(sessionmaker))


async def start_realtime(
    receiver: WebhookReceiver,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: RealtimeSettings,
    workers: Mapping[str, Triggerable],
    *,
    options: ManagerOptions | None = None,
    clock: Clock = utcnow,
) -> list[asyncio.Task[None]]:
    """The inbox drainer, and (with ROSTER_PUBLIC_URL) the subscription manager, for the Graph
    connector configured in the environment. Without a public URL the poll is the only mode."""
    if settings.graph is None:
        return []
    from app.connectors.registry import ensure_env_connectors
    from app.directory.records import SourceKind

    async with sessionmaker.begin() as session:
        rows = [r for r in await ensure_env_connectors(session, settings)
                if r.kind == SourceKind.GRAPH.value]  # fmt: skip
    drainer = InboxDrainer(sessionmaker, workers)
    receiver.drainer = drainer
    receiver.listeners.append(lambda _lifecycle: drainer.wake())
    tasks = [asyncio.create_task(drainer.run(), name="graph-inbox-drainer")]
    if settings.public_url is None or not rows:
        logger.info("graph change notifications off (no ROSTER_PUBLIC_URL): polling only")
        return tasks
    cipher = receiver.registry.cipher
    if cipher is None:
        logger.error("graph change notifications off: ROSTER_SECRET_KEY (16+ characters) is "
                     "needed to keep subscription secrets; polling only")  # fmt: skip
        return tasks
    try:
        webhook_urls(settings.public_url)
    except ValueError as exc:
        logger.error("graph change notifications off: %s; polling only", exc)
        return tasks
    graph = settings.graph
    for row in rows:
        manager = SubscriptionManager(
            sessionmaker,
            row.id,
            client_factory=subscription_client_factory(graph),
            public_url=settings.public_url,
            cipher=cipher,
            registry=receiver.registry,
            options=options,
            clock=clock,
        )
        receiver.listeners.append(_wake_on_lifecycle(manager))
        receiver.managers.append(manager)
        tasks.append(asyncio.create_task(manager.run(), name=f"graph-subscriptions-{row.name}"))
        logger.info("graph change notifications on: connector=%s url=%s", row.name,
                    manager.notification_url)  # fmt: skip
    return tasks


def _wake_on_lifecycle(manager: SubscriptionManager) -> Callable[[bool], None]:
    def listener(lifecycle: bool) -> None:
        if lifecycle:
            manager.wake()

    return listener


async def list_recorded(session: AsyncSession) -> list[dict[str, Any]]:
    """Stored subscriptions for `roster graph subscriptions` (never their secrets)."""
    rows = await session.scalars(select(GraphSubscription).order_by(GraphSubscription.created_at))
    return [
        {
            "id": row.id,
            "connector_id": row.connector_id,
            "resource": row.resource,
            "expires_at": aware(row.expires_at).isoformat(),
            "created_at": aware(row.created_at).isoformat(),
            "renewed_at": aware(row.renewed_at).isoformat() if row.renewed_at else None,
            "last_lifecycle_event": row.last_lifecycle_event,
        }
        for row in rows
    ]


async def unsubscribe(
    sessionmaker: async_sessionmaker[AsyncSession],
    client_factory: Callable[[], GraphSubscriptionClient],
    ids: list[str] | None = None,
) -> list[str]:
    """Delete recorded subscriptions (all, or `ids`) at Graph and here; returns the ids."""
    async with sessionmaker() as session:
        stmt = select(GraphSubscription.id)
        if ids:
            stmt = stmt.where(GraphSubscription.id.in_(ids))
        targets = list(await session.scalars(stmt))
    targets += [sub_id for sub_id in ids or [] if sub_id not in targets]  # orphans at Graph
    async with client_factory() as client:
        for sub_id in targets:
            await client.delete_subscription(sub_id)
            async with sessionmaker.begin() as session:
                await session.execute(
                    delete(GraphSubscription).where(GraphSubscription.id == sub_id)
                )
    return targets

"""Graph subscriptions on /users and /groups: create, renew, reauthorize, recreate, remove.

Microsoft Learn "Create subscription", "Update subscription", "subscription: reauthorize" and
"Reduce missing subscriptions and change notifications" (docs/outside-behaviour.md §2): users
and groups take `changeType=updated,deleted`, live at most 41,760 minutes, and get only
`reauthorizationRequired` lifecycle events, so a lost subscription shows up as a 404 on renewal.
We renew daily, well before expiry, which also finds lost subscriptions within a day; the
safety-net delta poll covers the data meanwhile.

State lives in `graph_subscriptions` (clientState encrypted), so restarts keep subscriptions
and replicas agree. Changes are made only while holding the connector's lease (the same row the
runner uses), so two replicas never create two sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors import leases
from app.connectors.graph.client import GraphError
from app.connectors.graph.inbox import (
    add_follow_up,
    utcnow,
)
from app.connectors.graph.models import GraphSubscription, WebhookInbox
from app.connectors.graph.notifications import (
    LIFECYCLE_KINDS,
    STREAMS,
    KnownSubscription,
    SubscriptionRegistry,
)
from app.connectors.graph.secrets import ClientStateCipher, new_client_state
from app.connectors.graph.subscription_client import (
    GraphSubscriptionClient,
    RemoteSubscription,
    SubscriptionGone,
    aware,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
MAX_LIFETIME = timedelta(minutes=41_760)
RESOURCES = ("/users", "/groups")
NOTIFICATIONS_PATH = "/v1/graph/notifications"
LIFECYCLE_PATH = "/v1/graph/lifecycle"
REAUTHORIZE = LIFECYCLE_KINDS["reauthorizationRequired"]
REMOVED = LIFECYCLE_KINDS["subscriptionRemoved"]


def webhook_urls(public_url: str) -> tuple[str, str]:
    """The notification and lifecycle URLs under ROSTER_PUBLIC_URL (https, or http on loopback)."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("ROSTER_PUBLIC_URL must be an absolute https URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            "ROSTER_PUBLIC_URL must be https: Graph delivers only to https (plain http is "
            "accepted on loopback, for tests and the simulator)"
        )
    base = public_url.rstrip("/")
    return base + NOTIFICATIONS_PATH, base + LIFECYCLE_PATH


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class ManagerOptions:
    # An hour under Graph's maximum, so clock skew never makes Graph refuse the expiry.
    lifetime: timedelta = MAX_LIFETIME - timedelta(hours=1)
    renew_after: timedelta = timedelta(days=1)  # renew daily...
    renew_before: timedelta = timedelta(days=3)  # ...and in any case this long before expiry
    verify_every: timedelta = timedelta(hours=6)  # compare with Graph's list (orphans, lost ones)
    check_interval: float = 30.0
    start_delay: float = 0.5  # let the HTTP server listen before Graph calls the handshake
    retry_delay: float = 15.0
    resources: tuple[str, ...] = RESOURCES


@dataclass(slots=True)
class ReconcileReport:
    busy: bool = False
    created: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    reauthorized: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    events: int = 0

    @property
    def changed(self) -> bool:
        return bool(
            self.created or self.renewed or self.reauthorized or self.removed or self.events
        )


@dataclass(slots=True)
class _Event:
    id: int
    subscription_id: str
    stream: str
    kind: str


class SubscriptionManager:
    """Keeps one subscription per resource alive for one Graph connector."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        connector_id: str,
        *,
        client_factory: Callable[[], GraphSubscriptionClient],
        public_url: str,
        cipher: ClientStateCipher,
        registry: SubscriptionRegistry | None = None,
        options: ManagerOptions | None = None,
        clock: Clock = utcnow,
        owner: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.connector_id = connector_id
        self.client_factory = client_factory
        self.notification_url, self.lifecycle_url = webhook_urls(public_url)
        self.cipher = cipher
        self.registry = registry
        self.options = options or ManagerOptions()
        self.clock = clock
        self.owner = owner or f"{leases.owner_id()}:subscriptions"
        self.reconciles = 0
        self._verified_at: datetime | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await asyncio.sleep(self.options.start_delay)
        failures = 0
        while True:
            try:
                report = await self.reconcile()
                failures = 0
                delay = 2.0 if report.busy else self.options.check_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(self.options.check_interval * 10,
                            self.options.retry_delay * 2 ** min(failures - 1, 6))  # fmt: skip
                logger.warning(
                    "graph subscriptions not reconciled, retrying: connector=%s delay=%.0fs "
                    "error=%s: %s",
                    self.connector_id, delay, type(exc).__name__, exc,
                )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()

    async def reconcile(self) -> ReconcileReport:
        """One pass: nothing happens (not even a lease claim) unless something is due."""
        now = self.clock()
        rows, events = await self._load()
        if not self._is_due(rows, events, now):
            return ReconcileReport()
        async with self._lease() as held:
            if not held:
                return ReconcileReport(busy=True)
            rows, events = await self._load()  # another replica may have acted meanwhile
            async with self.client_factory() as client:
                report = await self._apply(client, rows, events, now)
        self.reconciles += 1
        if report.changed:
            logger.info(
                "graph subscriptions reconciled: connector=%s created=%d renewed=%d "
                "reauthorized=%d removed=%d lifecycle_events=%d",
                self.connector_id, len(report.created), len(report.renewed),
                len(report.reauthorized), len(report.removed), report.events,
            )  # fmt: skip
        return report

    # ---- planning
    async def _load(self) -> tuple[list[GraphSubscription], list[_Event]]:
        async with self.sessionmaker() as session:
            rows = list(
                await session.scalars(
                    select(GraphSubscription)
                    .where(GraphSubscription.connector_id == self.connector_id)
                    .order_by(GraphSubscription.created_at)
                )
            )
            events = [
                _Event(r.id, r.subscription_id, r.stream, r.kind)
                for r in await session.scalars(
                    select(WebhookInbox)
                    .where(
                        WebhookInbox.connector_id == self.connector_id,
                        WebhookInbox.handled_at.is_(None),
                        WebhookInbox.kind.startswith("lifecycle:"),
                    )
                    .order_by(WebhookInbox.id)
                )
            ]
        return rows, events

    def _is_due(self, rows: list[GraphSubscription], events: list[_Event], now: datetime) -> bool:
        if events or self._verify_due(now):
            return True
        have = {row.resource for row in rows}
        if any(resource not in have for resource in self.options.resources):
            return True
        return any(self._renewal_due(row, now) or row.resource not in self.options.resources
                   for row in rows)  # fmt: skip

    def _verify_due(self, now: datetime) -> bool:
        return self._verified_at is None or now - self._verified_at >= self.options.verify_every

    def _renewal_due(self, row: GraphSubscription, now: datetime) -> bool:
        last = aware(row.renewed_at or row.created_at)
        return (
            now - last >= self.options.renew_after
            or aware(row.expires_at) - now <= self.options.renew_before
        )

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[bool]:
        async with self.sessionmaker.begin() as session:
            held = await leases.claim(session, self.connector_id, self.owner, now=self.clock())
        try:
            yield held
        finally:
            if held:
                async with self.sessionmaker.begin() as session:
                    await leases.release(session, self.connector_id, self.owner)

    # ---- acting (under the lease)
    async def _apply(
        self,
        client: GraphSubscriptionClient,
        rows: list[GraphSubscription],
        events: list[_Event],
        now: datetime,
    ) -> ReconcileReport:
        report = ReconcileReport(events=len(events))
        remote: dict[str, RemoteSubscription] | None = None
        if self._verify_due(now):
            remote = {s.id: s for s in await client.list_subscriptions()}
            self._verified_at = now
        live: dict[str, GraphSubscription] = {}
        for row in rows:
            found = remote.get(row.id) if remote is not None else None
            lost = remote is not None and (
                found is None or found.notification_url != self.notification_url
            )
            if (
                row.resource not in self.options.resources
                or row.resource in live
                or lost
                or aware(row.expires_at) <= now
            ):
                if found is not None or remote is None:
                    with contextlib.suppress(GraphError):
                        await client.delete_subscription(row.id)
                await self._drop(row.id)
                report.removed.append(row.id)
                continue
            live[row.resource] = row
        if remote is not None:  # created by us, but the row was never stored (a crash)
            known = {row.id for row in rows}
            for sub in remote.values():
                if sub.notification_url == self.notification_url and sub.id not in known:
                    await client.delete_subscription(sub.id)
                    report.removed.append(sub.id)
        by_id = {row.id: row for row in live.values()}
        for event in events:
            target = by_id.get(event.subscription_id)
            if target is not None:
                await self._on_event(client, target, event, live, report, now)
            async with self.sessionmaker.begin() as session:
                inbox = await session.get(WebhookInbox, event.id)
                if inbox is not None:
                    inbox.handled_at = now
                await add_follow_up(
                    session, reason=f"lifecycle:{event.id}", connector_id=self.connector_id,
                    subscription_id=event.subscription_id, stream=event.stream, now=now,
                )  # fmt: skip
        for resource, row in list(live.items()):
            if row.id in report.reauthorized or not self._renewal_due(row, now):
                continue
            try:
                renewed = await client.renew_subscription(row.id, now + self.options.lifetime)
            except SubscriptionGone:
                await self._drop(row.id)
                report.removed.append(row.id)
                del live[resource]
                continue
            await self._save_renewal(row.id, renewed.expires_at or now + self.options.lifetime,
                                     now)  # fmt: skip
            report.renewed.append(row.id)
        for resource in self.options.resources:
            if resource not in live:
                report.created.append(await self._create(client, resource, now))
        return report

    async def _on_event(
        self,
        client: GraphSubscriptionClient,
        row: GraphSubscription,
        event: _Event,
        live: dict[str, GraphSubscription],
        report: ReconcileReport,
        now: datetime,
    ) -> None:
        name = next((k for k, v in LIFECYCLE_KINDS.items() if v == event.kind), event.kind)
        if event.kind == REMOVED:
            # Graph removed it; recreate (below) and catch up with a round (the follow-up).
            with contextlib.suppress(GraphError):
                await client.delete_subscription(row.id)
            await self._drop(row.id)
            report.removed.append(row.id)
            live.pop(row.resource, None)
            return
        if event.kind == REAUTHORIZE and row.id not in report.reauthorized:
            try:
                await client.reauthorize_subscription(row.id)
            except SubscriptionGone:
                await self._drop(row.id)
                report.removed.append(row.id)
                live.pop(row.resource, None)
                return
            except GraphError as exc:  # reauthorize refused: a renewal reauthorizes too
                logger.warning("graph reauthorize failed, renewing instead: subscription=%s "
                               "error=%s", row.id, type(exc).__name__)  # fmt: skip
                renewed = await client.renew_subscription(row.id, now + self.options.lifetime)
                await self._save_renewal(row.id, renewed.expires_at or now, now)
            report.reauthorized.append(row.id)
        async with self.sessionmaker.begin() as session:
            stored = await session.get(GraphSubscription, row.id)
            if stored is not None:
                stored.last_lifecycle_event = name

    async def _create(self, client: GraphSubscriptionClient, resource: str, now: datetime) -> str:
        client_state = new_client_state()
        created = await client.create_subscription(
            resource=resource,
            notification_url=self.notification_url,
            lifecycle_url=self.lifecycle_url,
            client_state=client_state,
            expires_at=now + self.options.lifetime,
        )
        stream = STREAMS[resource]
        async with self.sessionmaker.begin() as session:
            session.add(
                GraphSubscription(
                    id=created.id,
                    connector_id=self.connector_id,
                    resource=resource,
                    client_state_encrypted=self.cipher.encrypt(
                        client_state, subscription_id=created.id, connector_id=self.connector_id
                    ),
                    expires_at=created.expires_at or now + self.options.lifetime,
                    created_at=now,
                    renewed_at=None,
                    last_lifecycle_event=None,
                )
            )
            # A subscription reports only later changes: one round closes the gap.
            await add_follow_up(
                session, reason=f"created:{created.id}", connector_id=self.connector_id,
                subscription_id=created.id, stream=stream, now=now,
            )  # fmt: skip
        if self.registry is not None:
            self.registry.remember(
                KnownSubscription(created.id, self.connector_id, stream, client_state.encode())
            )
        logger.info("graph subscription created: connector=%s resource=%s subscription=%s "
                    "expires=%s", self.connector_id, resource, created.id,
                    created.expires_at)  # fmt: skip
        return created.id

    async def _save_renewal(self, sub_id: str, expires_at: datetime, now: datetime) -> None:
        async with self.sessionmaker.begin() as session:
            stored = await session.get(GraphSubscription, sub_id)
            if stored is not None:
                stored.expires_at = expires_at
                stored.renewed_at = now

    async def _drop(self, sub_id: str) -> None:
        async with self.sessionmaker.begin() as session:
            await session.execute(delete(GraphSubscription).where(GraphSubscription.id == sub_id))
        if self.registry is not None:
            self.registry.forget(sub_id)


# ---- wiring, CLI

"""Graph change and lifecycle notification bodies: parsing and the clientState check.

Shapes follow Microsoft Learn "Receive change notifications through webhooks" and "Reduce missing
subscriptions and change notifications". Users and groups never carry resource data, only an id,
so a verified notification only says "run a delta round of this stream"
(docs/outside-behaviour.md §2).
Every item is checked on its own: one POST can mix subscriptions, and a forged item must not
ride along with good ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.graph.models import GraphSubscription
from app.connectors.graph.secrets import ClientStateCipher, SecretKeyError

logger = logging.getLogger(__name__)

MAX_ITEMS = 1000  # per POST; Graph batches far fewer
MAX_ID_LENGTH = 100  # graph_subscriptions.id
CHANGE = "change"
# Inbox `kind` values (String(30)): the long Graph event names do not fit.
LIFECYCLE_KINDS = {
    "reauthorizationRequired": "lifecycle:reauthorize",
    "subscriptionRemoved": "lifecycle:removed",
    "missed": "lifecycle:missed",
}
OTHER_LIFECYCLE = "lifecycle:other"
STREAMS = {"/users": "users", "/groups": "groups", "users": "users", "groups": "groups"}


class MalformedNotification(ValueError):
    """The body is not a Graph notification collection (answered 400)."""


@dataclass(frozen=True, slots=True)
class Notification:
    subscription_id: str
    client_state: str | None
    change_type: str | None = None
    resource: str | None = None
    lifecycle_event: str | None = None
    expiration: str | None = None

    @property
    def kind(self) -> str:
        if self.lifecycle_event is None:
            return CHANGE
        return LIFECYCLE_KINDS.get(self.lifecycle_event, OTHER_LIFECYCLE)

    def dedupe_key(self, connector_id: str) -> str:
        """The same item delivered twice (Graph retries) is stored once while it is pending."""
        material = orjson.dumps(
            [
                connector_id,
                self.subscription_id,
                self.kind,
                self.change_type,
                self.resource,
                self.expiration,
            ]
        )
        return hashlib.sha256(material).hexdigest()


@dataclass(slots=True)
class Parsed:
    items: list[Notification]
    malformed: int = 0  # entries of `value` that are not notification objects


def parse(body: bytes, *, lifecycle: bool) -> Parsed:
    """`{"value": [...]}` → notifications; a body that is not that raises MalformedNotification."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedNotification("the body is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise MalformedNotification('expected a JSON object with a "value" list')
    values: list[Any] = document["value"]
    if len(values) > MAX_ITEMS:
        raise MalformedNotification(f"more than {MAX_ITEMS} notifications in one request")
    parsed = Parsed(items=[])
    for value in values:
        item = _item(value, lifecycle=lifecycle)
        if item is None:
            parsed.malformed += 1
        else:
            parsed.items.append(item)
    return parsed


def _item(value: Any, *, lifecycle: bool) -> Notification | None:
    if not isinstance(value, dict):
        return None
    sub = value.get("subscriptionId")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_ID_LENGTH:
        return None
    event = value.get("lifecycleEvent")
    if lifecycle and not isinstance(event, str):
        return None
    return Notification(
        subscription_id=sub,
        client_state=_str(value.get("clientState")),
        change_type=_str(value.get("changeType")),
        resource=_str(value.get("resource")),
        lifecycle_event=event if isinstance(event, str) else None,
        expiration=_str(value.get("subscriptionExpirationDateTime")),
    )


def _str(value: Any) -> str | None:
    return value[:300] if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class KnownSubscription:
    id: str
    connector_id: str
    stream: str
    client_state: bytes = field(repr=False)


@dataclass(slots=True)
class WebhookStats:
    """Counters for the webhook routes (tests, logs); drops are counted, never answered."""

    handshakes: int = 0
    requests: int = 0
    accepted: int = 0
    unknown_subscription: int = 0
    bad_client_state: int = 0
    malformed: int = 0
    rejected_bodies: int = 0
    store_failures: int = 0

    @property
    def dropped(self) -> int:
        return self.unknown_subscription + self.bad_client_state + self.malformed


class SubscriptionRegistry:
    """subscriptionId → connector, stream and decrypted clientState, cached in memory.

    The cache keeps the webhook path to one indexed query per request at most (unknown ids of a
    request are looked up together) and keeps Fernet off the hot path. Unknown ids are cached
    briefly, so a flood of forged ids cannot turn into a flood of queries.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        cipher: ClientStateCipher | None,
        *,
        ttl: float = 60.0,
        negative_ttl: float = 1.0,
        max_negative: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.cipher = cipher
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_negative = max_negative
        self.clock = clock
        self._known: dict[str, tuple[float, KnownSubscription]] = {}
        self._unknown: dict[str, float] = {}
        self._loading = asyncio.Lock()

    def remember(self, sub: KnownSubscription) -> None:
        self._known[sub.id] = (self.clock() + self.ttl, sub)
        self._unknown.pop(sub.id, None)

    def forget(self, subscription_id: str) -> None:
        self._known.pop(subscription_id, None)

    async def resolve(self, ids: Iterable[str]) -> dict[str, KnownSubscription]:
        now = self.clock()
        found: dict[str, KnownSubscription] = {}
        missing: list[str] = []
        for sub_id in set(ids):
            cached = self._known.get(sub_id)
            if cached is not None and cached[0] > now:
                found[sub_id] = cached[1]
            elif self._unknown.get(sub_id, 0.0) <= now:
                missing.append(sub_id)
        if missing:
            # One load at a time: a burst for a subscription not yet cached would otherwise
            # send every concurrent request to the database (a thundering herd).
            async with self._loading:
                now = self.clock()
                for sub_id in list(missing):
                    cached = self._known.get(sub_id)
                    if cached is not None and cached[0] > now:
                        found[sub_id] = cached[1]
                        missing.remove(sub_id)
                    elif self._unknown.get(sub_id, 0.0) > now:
                        missing.remove(sub_id)
                loaded = await self._load(missing) if missing else {}
            for sub_id in missing:
                if sub_id in loaded:
                    self.remember(loaded[sub_id])
                    found[sub_id] = loaded[sub_id]
                else:
                    if len(self._unknown) >= self.max_negative:
                        self._unknown.clear()
                    self._unknown[sub_id] = now + self.negative_ttl
        return found

    async def _load(self, ids: list[str]) -> dict[str, KnownSubscription]:
        async with self.sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(GraphSubscription).where(GraphSubscription.id.in_(ids))
                )
            ).all()
        result: dict[str, KnownSubscription] = {}
        for row in rows:
            stream = STREAMS.get(row.resource.lower())
            if stream is None or self.cipher is None:
                continue
            try:
                secret = self.cipher.decrypt(
                    row.client_state_encrypted,
                    subscription_id=row.id,
                    connector_id=row.connector_id,
                )
            except SecretKeyError as exc:
                logger.error("graph subscription secret unreadable: subscription=%s: %s",
                             row.id, exc.message)  # fmt: skip
                continue
            result[row.id] = KnownSubscription(
                row.id, row.connector_id, stream, secret.encode("utf-8")
            )
        return result


@dataclass(slots=True)
class Verified:
    rows: list[dict[str, Any]]
    wants_manager: bool = False  # a lifecycle event the subscription manager must act on


async def verify(
    parsed: Parsed, registry: SubscriptionRegistry, stats: WebhookStats, *, now: datetime
) -> Verified:
    """Inbox rows for the items whose subscription is ours and whose clientState matches."""
    stats.malformed += parsed.malformed
    known = await registry.resolve(item.subscription_id for item in parsed.items)
    verified = Verified(rows=[])
    seen: set[str] = set()
    for item in parsed.items:
        sub = known.get(item.subscription_id)
        if sub is None:
            stats.unknown_subscription += 1
            continue
        given = (item.client_state or "").encode("utf-8")
        if not hmac.compare_digest(given, sub.client_state):
            stats.bad_client_state += 1
            continue
        key = item.dedupe_key(sub.connector_id)
        if key in seen:
            continue
        seen.add(key)
        stats.accepted += 1
        verified.wants_manager = verified.wants_manager or item.kind != CHANGE
        verified.rows.append(
            {
                "dedupe_key": key,
                "connector_id": sub.connector_id,
                "subscription_id": sub.id,
                "stream": sub.stream,
                "kind": item.kind,
                "resource": item.resource,
                "received_at": now,
                "handled_at": None,
            }
        )
    return verified

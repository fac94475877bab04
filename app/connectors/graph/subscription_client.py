"""Graph subscription CRUD (create, renew, reauthorize, delete, list) through msgraph-sdk.

Microsoft Learn "Create subscription", "Update subscription", "subscription: reauthorize"; a 404
means the subscription expired or was removed (docs/outside-behaviour.md §2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from kiota_abstractions.api_error import APIError
from msgraph.generated.models.subscription import Subscription

from app.connectors.graph.client import GraphClient, GraphError
from app.connectors.graph.config import GraphSettings

T = TypeVar("T")

CHANGE_TYPE = "updated,deleted"  # the only change types users and groups support


class SubscriptionGone(GraphError):
    """Graph answered 404 for a subscription: it expired or was removed; create a new one."""


@dataclass(frozen=True, slots=True)
class RemoteSubscription:
    id: str
    resource: str
    expires_at: datetime | None
    notification_url: str | None


class GraphSubscriptionClient(GraphClient):
    """Subscription CRUD through msgraph-sdk's typed builders (a handful of small objects, so
    the typed models' cost does not matter here, unlike delta pages)."""

    async def create_subscription(
        self, *, resource: str, notification_url: str, lifecycle_url: str, client_state: str,
        expires_at: datetime,
    ) -> RemoteSubscription:  # fmt: skip
        body = Subscription(
            change_type=CHANGE_TYPE,
            resource=resource,
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            client_state=client_state,
            expiration_date_time=expires_at,
        )
        created = await self._call("create", lambda: self._sdk.subscriptions.post(body))
        if created is None or not created.id:
            raise GraphError("graph created a subscription without an id")
        return _remote(created)

    async def renew_subscription(self, sub_id: str, expires_at: datetime) -> RemoteSubscription:
        body = Subscription(expiration_date_time=expires_at)
        item = self._sdk.subscriptions.by_subscription_id(sub_id)
        renewed = await self._call("renew", lambda: item.patch(body))
        if renewed is None:
            return RemoteSubscription(sub_id, "", expires_at, None)
        return _remote(renewed)

    async def reauthorize_subscription(self, sub_id: str) -> None:
        item = self._sdk.subscriptions.by_subscription_id(sub_id)
        await self._call("reauthorize", lambda: item.reauthorize.post())

    async def delete_subscription(self, sub_id: str) -> None:
        """Deleting what Graph no longer has is fine."""
        item = self._sdk.subscriptions.by_subscription_id(sub_id)
        with contextlib.suppress(SubscriptionGone):
            await self._call("delete", lambda: item.delete())

    async def list_subscriptions(self) -> list[RemoteSubscription]:
        """Every subscription of this application in the tenant (follows nextLinks)."""
        result: list[RemoteSubscription] = []
        builder = self._sdk.subscriptions
        while True:
            page = await self._call("list", builder.get)
            if page is None:
                return result
            result.extend(_remote(s) for s in page.value or [] if s.id)
            if not page.odata_next_link:
                return result
            builder = builder.with_url(page.odata_next_link)

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except APIError as exc:
            if exc.response_status_code == 404:
                raise SubscriptionGone(f"graph subscription {what}: 404") from exc
            raise self._map_api_error(exc, f"{self.base_url}/subscriptions") from exc


def _remote(sub: Subscription) -> RemoteSubscription:
    return RemoteSubscription(
        id=str(sub.id),
        resource=sub.resource or "",
        expires_at=aware(sub.expiration_date_time) if sub.expiration_date_time else None,
        notification_url=sub.notification_url,
    )


def aware(when: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def subscription_client_factory(graph: GraphSettings) -> Callable[[], GraphSubscriptionClient]:
    return lambda: GraphSubscriptionClient.from_settings(graph)

"""Simulated Graph change notifications: `/v1.0/subscriptions`, handshake, delivery, lifecycle.

Behaviour follows Microsoft Learn "Create subscription", "Update subscription", "subscription:
reauthorize", "Receive change notifications through webhooks" and "Reduce missing subscriptions
and change notifications" (docs/outside-behaviour.md §2): users and groups take only
`updated,deleted`; lifetime at most 41,760 minutes (under 45 is raised to 45); both URLs are
validated with a `validationToken` POST that must be echoed as text/plain within 10 s before the
subscription exists; notifications carry only ids and come in batches, retried with backoff on
failure.
Unlike Graph, plain http is accepted for loopback URLs (tests and demos run without TLS).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from fastapi import APIRouter, Body, Header, HTTPException, Response

from app.simulator.graph.state import SimulatorState
from app.simulator.graph.store import LogEntry

logger = logging.getLogger(__name__)

JSON = "application/json"
MAX_MINUTES = 41_760
MIN_MINUTES = 45
SUBSCRIBABLE = {"users": "users", "groups": "groups"}
SUPPORTED_CHANGES = frozenset({"updated", "deleted"})
ODATA = {
    "users": ("Users", "#Microsoft.Graph.User"),
    "groups": ("Groups", "#Microsoft.Graph.Group"),
}
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
QUOTA = 100  # per app and tenant


class SubscriptionError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(slots=True)
class SimSubscription:
    id: str
    resource: str
    stream: str
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    created: datetime
    needs_reauthorization: bool = False

    def to_json(self, *, include_state: bool = False, app_id: str = "") -> dict[str, Any]:
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": app_id,
            "changeType": ",".join(sorted(self.change_types, key=["updated", "deleted"].index)),
            "clientState": self.client_state if include_state else None,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": _graph_time(self.expiration),
            "creatorId": app_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationQueryOptions": None,
            "notificationUrlAppId": None,
        }


@dataclass(slots=True)
class Outgoing:
    url: str
    item: dict[str, Any]
    subscription_id: str
    attempts: int = 0
    not_before: float = 0.0


@dataclass(slots=True)
class DeliveryStats:
    posts: int = 0
    delivered: int = 0  # items answered 2xx
    failed_attempts: int = 0
    lost: int = 0  # items given up after max_attempts, or dropped by the `lose` fault
    handshakes: int = 0
    statuses: list[int] = field(default_factory=list)


class _NotifyingLog(list[LogEntry]):
    """A store change log that also tells the subscription service about each new entry."""

    def __init__(
        self, entries: list[LogEntry], resource: str, sink: Callable[[str, LogEntry], None]
    ):
        super().__init__(entries)
        self._resource = resource
        self._sink = sink

    def append(self, entry: LogEntry) -> None:
        super().append(entry)
        self._sink(self._resource, entry)


class SubscriptionService:
    """Subscriptions of one simulated tenant and the thread that delivers their notifications."""

    def __init__(
        self,
        state: SimulatorState,
        *,
        verify: ssl.SSLContext | str | bool = True,
        batch_size: int = 100,
        batch_window: float = 0.02,
        max_attempts: int = 6,
        backoff: float = 0.5,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.state = state
        self.verify = verify
        self.batch_size = batch_size
        self.batch_window = batch_window
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.handshake_timeout = handshake_timeout
        self.time_offset = timedelta(0)
        self.subscriptions: dict[str, SimSubscription] = {}
        self.stats = DeliveryStats()
        self.paused = False
        self._lose = 0
        self._queue: list[Outgoing] = []
        self._cond = threading.Condition()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._stopped = False
        for resource in SUBSCRIBABLE:
            log = state.store.logs[resource]
            if not isinstance(log, _NotifyingLog):
                state.store.logs[resource] = _NotifyingLog(log, resource, self._on_change)

    # ---- time
    def now(self) -> datetime:
        return datetime.now(UTC) + self.time_offset

    def advance(self, delta: timedelta) -> None:
        """Move the simulator's subscription clock (expiry checks), e.g. to test renewals."""
        self.time_offset += delta

    # ---- CRUD
    def create(self, body: dict[str, Any]) -> SimSubscription:
        resource = str(body.get("resource") or "")
        stream = SUBSCRIBABLE.get(resource.strip("/").lower())
        if stream is None:
            raise SubscriptionError(400, "InvalidRequest", f"Resource '{resource}' not supported.")
        changes = frozenset(
            c.strip() for c in str(body.get("changeType") or "").split(",") if c.strip()
        )
        if not changes or not changes <= SUPPORTED_CHANGES:
            raise SubscriptionError(
                400, "InvalidRequest",
                f"Change type '{body.get('changeType')}' is not supported for resource "
                f"'{resource}'. Supported: updated, deleted.",
            )  # fmt: skip
        client_state = body.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > 128
        ):
            raise SubscriptionError(
                400, "InvalidRequest", "clientState is limited to 128 characters."
            )
        notification_url = _checked_url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None:
            lifecycle_url = _checked_url(lifecycle_url, "lifecycleNotificationUrl")
        expiration = self._expiration(body.get("expirationDateTime"))
        with self._lock:
            self._purge_expired()
            if len(self.subscriptions) >= QUOTA:
                raise SubscriptionError(403, "ExtensionError", "Subscription quota reached.")
        for url in {notification_url, lifecycle_url} - {None}:
            self._handshake(str(url))
        sub = SimSubscription(
            id=str(uuid.uuid4()),
            resource=resource,
            stream=stream,
            change_types=changes,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expiration=expiration,
            created=self.now(),
        )
        with self._lock:
            self.subscriptions[sub.id] = sub
        logger.info("simulator subscription created: id=%s resource=%s", sub.id, resource)
        return sub

    def get(self, sub_id: str) -> SimSubscription:
        with self._lock:
            self._purge_expired()
            sub = self.subscriptions.get(sub_id)
            if sub is None:
                raise SubscriptionError(
                    404, "ResourceNotFound", f"The object '{sub_id}' doesn't exist."
                )
            return sub

    def all(self) -> list[SimSubscription]:
        with self._lock:
            self._purge_expired()
            return list(self.subscriptions.values())

    def update(self, sub_id: str, body: dict[str, Any]) -> SimSubscription:
        sub = self.get(sub_id)
        if "expirationDateTime" in body:
            sub.expiration = self._expiration(body["expirationDateTime"])
        if body.get("notificationUrl"):
            url = _checked_url(body["notificationUrl"], "notificationUrl")
            self._handshake(url)
            sub.notification_url = url
        # A renewal also reauthorizes (docs/outside-behaviour.md §2).
        sub.needs_reauthorization = False
        self._kick()
        return sub

    def reauthorize(self, sub_id: str) -> None:
        self.get(sub_id).needs_reauthorization = False
        self._kick()

    def delete(self, sub_id: str) -> None:
        self.get(sub_id)
        with self._lock:
            self.subscriptions.pop(sub_id, None)

    def _expiration(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise SubscriptionError(400, "InvalidRequest", "expirationDateTime is required.")
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise SubscriptionError(
                400, "InvalidRequest", "expirationDateTime is invalid."
            ) from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        now = self.now()
        if when > now + timedelta(minutes=MAX_MINUTES):
            raise SubscriptionError(
                400, "InvalidRequest",
                f"Subscription expiration can only be {MAX_MINUTES} minutes in the future.",
            )  # fmt: skip
        return max(when, now + timedelta(minutes=MIN_MINUTES))

    def _purge_expired(self) -> None:
        now = self.now()
        for sub_id in [s.id for s in self.subscriptions.values() if s.expiration <= now]:
            del self.subscriptions[sub_id]

    # ---- handshake
    def _handshake(self, url: str) -> None:
        # Graph's token has spaces and punctuation; a few HTML-ish characters prove the echo is
        # decoded and never escaped.
        token = (
            "Validation: Testing client application reachability for subscription "
            f"Request-Id: {uuid.uuid4()} <&>\"'"
        )
        self.stats.handshakes += 1
        try:
            answer = self._http().post(
                url,
                params={"validationToken": token},
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=self.handshake_timeout,
            )
        except httpx.HTTPError as exc:
            raise self._validation_failed(url, type(exc).__name__) from exc
        content_type = answer.headers.get("content-type", "")
        if (
            answer.status_code != 200
            or answer.text != token
            or not content_type.startswith("text/plain")
        ):
            raise self._validation_failed(url, f"status {answer.status_code}")

    @staticmethod
    def _validation_failed(url: str, why: str) -> SubscriptionError:
        logger.info("simulator validation failed: url=%s reason=%s", url, why)
        return SubscriptionError(
            400, "ValidationError",
            "Subscription validation request failed. Notification endpoint must respond with "
            "200 OK to validation request.",
        )  # fmt: skip

    # ---- notifications
    def _on_change(self, resource: str, entry: LogEntry) -> None:
        change = "deleted" if entry.op == "hard" else "updated"
        folder, odata_type = ODATA[resource]
        now = self.now()
        with self._lock:
            targets = [
                s
                for s in self.subscriptions.values()
                if s.stream == resource and change in s.change_types and s.expiration > now
            ]
        if not targets:
            return
        with self._cond:
            for sub in targets:
                if self._lose > 0:
                    self._lose -= 1
                    self.stats.lost += 1
                    continue
                item = {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": _graph_time(sub.expiration),
                    "changeType": change,
                    "resource": f"{folder}/{entry.obj_id}",
                    "resourceData": {
                        "@odata.type": odata_type,
                        "@odata.id": f"{folder}/{entry.obj_id}",
                        "id": entry.obj_id,
                        "organizationId": self.state.tenant_id,
                    },
                    "clientState": sub.client_state,
                    "tenantId": self.state.tenant_id,
                }
                self._queue.append(Outgoing(sub.notification_url, item, sub.id))
            self._ensure_thread()
            self._cond.notify()

    def send_lifecycle(self, sub_id: str, event: str) -> None:
        """Queue a lifecycle notification; `subscriptionRemoved` also removes the subscription
        and `reauthorizationRequired` holds its change notifications until it is reauthorized."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {event!r}")
        sub = self.get(sub_id)
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _graph_time(sub.expiration),
            "tenantId": self.state.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        if event == "reauthorizationRequired":
            sub.needs_reauthorization = True
        if event == "subscriptionRemoved":
            with self._lock:
                self.subscriptions.pop(sub.id, None)
        with self._cond:
            # Lifecycle items go out even while change delivery waits for reauthorization.
            self._queue.append(Outgoing(sub.lifecycle_url or sub.notification_url, item, ""))
            self._ensure_thread()
            self._cond.notify()

    def lose_next(self, count: int = 1) -> None:
        """Silently drop the next `count` change notifications (then send `missed` yourself)."""
        with self._cond:
            self._lose += count

    def remove_silently(self, sub_id: str) -> None:
        """Graph lost the subscription without telling anyone: renewals answer 404."""
        with self._lock:
            self.subscriptions.pop(sub_id, None)

    def forge(
        self,
        url: str,
        *,
        subscription_id: str | None = None,
        client_state: str | None = "forged",
        resource: str = "Users/00000000-0000-0000-0000-000000000000",
        body: bytes | None = None,
    ) -> int:
        """POST a notification that Graph never sent; returns the HTTP status received."""
        if body is None:
            item = {
                "subscriptionId": subscription_id or str(uuid.uuid4()),
                "subscriptionExpirationDateTime": _graph_time(self.now() + timedelta(days=1)),
                "changeType": "updated",
                "resource": resource,
                "clientState": client_state,
                "tenantId": self.state.tenant_id,
            }
            body = orjson.dumps({"value": [item]})
        answer = self._http().post(url, content=body, headers={"Content-Type": JSON}, timeout=10)
        return answer.status_code

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            self._client.close()

    # ---- delivery thread
    def _kick(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopped = False
            self._thread = threading.Thread(
                target=self._deliver_forever, name="graph-sim-notify", daemon=True
            )
            self._thread.start()

    def _deliver_forever(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._ready():
                    self._cond.wait(timeout=self._next_due())
                if self._stopped:
                    return
            time.sleep(self.batch_window)  # let a burst gather into one POST
            with self._cond:
                batch = self._take()
            for url, items in batch.items():
                for start in range(0, len(items), self.batch_size):
                    self._post(url, items[start : start + self.batch_size])

    def _blocked(self, out: Outgoing) -> bool:
        sub = self.subscriptions.get(out.subscription_id)
        return self.paused or (sub is not None and sub.needs_reauthorization)

    def _ready(self) -> bool:
        now = time.monotonic()
        return any(o.not_before <= now and not self._blocked(o) for o in self._queue)

    def _next_due(self) -> float | None:
        dues = [o.not_before for o in self._queue if not self._blocked(o)]
        return max(0.01, min(dues) - time.monotonic()) if dues else 0.5

    def _take(self) -> dict[str, list[Outgoing]]:
        now = time.monotonic()
        batch: dict[str, list[Outgoing]] = {}
        keep: list[Outgoing] = []
        for out in self._queue:
            if out.not_before <= now and not self._blocked(out):
                batch.setdefault(out.url, []).append(out)
            else:
                keep.append(out)
        self._queue = keep
        return batch

    def _post(self, url: str, items: list[Outgoing]) -> None:
        body = orjson.dumps({"value": [o.item for o in items]})
        status = 0
        try:
            answer = self._http().post(
                url, content=body, headers={"Content-Type": JSON}, timeout=10
            )
            status = answer.status_code
        except httpx.HTTPError as exc:
            logger.info("simulator delivery failed: url=%s error=%s", url, type(exc).__name__)
        with self._cond:
            self.stats.posts += 1
            self.stats.statuses.append(status)
            if 200 <= status < 300:
                self.stats.delivered += len(items)
                return
            self.stats.failed_attempts += 1
            for out in items:
                out.attempts += 1
                if out.attempts >= self.max_attempts:
                    self.stats.lost += 1
                    continue
                out.not_before = time.monotonic() + self.backoff * 2 ** (out.attempts - 1)
                self._queue.append(out)
            self._cond.notify()

    def _http(self) -> httpx.Client:
        if self._client is None:
            verify = self.verify
            if isinstance(verify, str):  # a CA file that signed Roster's certificate
                verify = ssl.create_default_context(cafile=verify)
            self._client = httpx.Client(verify=verify, timeout=10)
        return self._client


def subscription_service(state: SimulatorState) -> SubscriptionService:
    """The state's subscription service, created on first use (tests reach it through this)."""
    service = state.__dict__.get("_subscriptions")
    if service is None:
        service = SubscriptionService(state)
        state.__dict__["_subscriptions"] = service
    assert isinstance(service, SubscriptionService)  # noqa: S101 - internal invariant
    return service


def subscriptions_router(state: SimulatorState) -> APIRouter:
    """`/v1.0/subscriptions` (Graph) and `/_control/subscriptions` (faults and inspection).

    The Graph routes are plain functions: FastAPI runs them in its thread pool, so the
    validation handshake (a blocking POST to the subscriber) never stalls the event loop.
    """
    service = subscription_service(state)
    router = APIRouter()

    def guarded(authorization: str | None, work: Callable[[], Response]) -> Response:
        if not state.auth.is_valid(authorization):
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        throttle = state.next_throttle()
        if throttle is not None:
            response = _error(throttle.status, "TooManyRequests", "Please retry after the delay.")
            if throttle.retry_after is not None:
                response.headers["Retry-After"] = str(throttle.retry_after)
            return response
        try:
            return work()
        except SubscriptionError as exc:
            return _error(exc.status, exc.code, exc.message)

    app_id = state.client_id

    @router.post("/v1.0/subscriptions")
    def create(
        body: dict[str, Any] = Body(...), authorization: str | None = Header(None)
    ) -> Response:
        return guarded(
            authorization,
            lambda: _json(service.create(body).to_json(include_state=True, app_id=app_id), 201),
        )

    @router.get("/v1.0/subscriptions")
    def list_(authorization: str | None = Header(None)) -> Response:
        return guarded(
            authorization,
            lambda: _json({"value": [s.to_json(app_id=app_id) for s in service.all()]}),
        )

    @router.get("/v1.0/subscriptions/{sub_id}")
    def get(sub_id: str, authorization: str | None = Header(None)) -> Response:
        return guarded(authorization, lambda: _json(service.get(sub_id).to_json(app_id=app_id)))

    @router.patch("/v1.0/subscriptions/{sub_id}")
    def patch(
        sub_id: str, body: dict[str, Any] = Body(...), authorization: str | None = Header(None)
    ) -> Response:
        return guarded(
            authorization, lambda: _json(service.update(sub_id, body).to_json(app_id=app_id))
        )

    @router.delete("/v1.0/subscriptions/{sub_id}")
    def delete(sub_id: str, authorization: str | None = Header(None)) -> Response:
        def work() -> Response:
            service.delete(sub_id)
            return Response(status_code=204)

        return guarded(authorization, work)

    @router.post("/v1.0/subscriptions/{sub_id}/reauthorize")
    def reauthorize(sub_id: str, authorization: str | None = Header(None)) -> Response:
        def work() -> Response:
            service.reauthorize(sub_id)
            return Response(status_code=204)

        return guarded(authorization, work)

    # ---- control
    @router.get("/_control/subscriptions")
    def control_list() -> dict[str, Any]:
        return {
            "value": [s.to_json(app_id=app_id) for s in service.all()],
            "delivery": {
                "posts": service.stats.posts,
                "delivered": service.stats.delivered,
                "failed_attempts": service.stats.failed_attempts,
                "lost": service.stats.lost,
                "pending": service.pending(),
            },
        }

    @router.post("/_control/subscriptions/{sub_id}/lifecycle", status_code=204)
    def control_lifecycle(sub_id: str, body: dict[str, Any] = Body(...)) -> Response:
        try:
            service.send_lifecycle(sub_id, str(body.get("event")))
        except SubscriptionError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return Response(status_code=204)

    @router.delete("/_control/subscriptions/{sub_id}", status_code=204)
    def control_remove(sub_id: str) -> Response:
        service.remove_silently(sub_id)
        return Response(status_code=204)

    @router.post("/_control/subscriptions/faults", status_code=204)
    def control_faults(body: dict[str, Any] = Body(...)) -> Response:
        if "paused" in body:
            service.paused = bool(body["paused"])
            service._kick()
        if "lose_next" in body:
            service.lose_next(int(body["lose_next"]))
        if "advance_seconds" in body:
            service.advance(timedelta(seconds=float(body["advance_seconds"])))
        return Response(status_code=204)

    @router.post("/_control/subscriptions/forge")
    def control_forge(body: dict[str, Any] = Body(...)) -> dict[str, int]:
        status = service.forge(
            str(body["url"]),
            subscription_id=body.get("subscriptionId"),
            client_state=body.get("clientState", "forged"),
        )
        return {"status": status}

    return router


def _checked_url(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise SubscriptionError(400, "InvalidRequest", f"{name} is required.")
    parts = urlsplit(value)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return value
    raise SubscriptionError(400, "InvalidRequest", f"{name} must be an https URL.")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _graph_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type=JSON)


def _error(status: int, code: str, message: str) -> Response:
    inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}  # fmt: skip
    return _json({"error": {"code": code, "message": message, "innerError": inner}}, status)

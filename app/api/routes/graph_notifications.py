"""Graph webhooks: public routes, verified per item by clientState (docs/contracts.md §8).

Graph wants the validation handshake echoed within 10 s and every notification answered 2xx
within 3 s; slow endpoints get their notifications delayed, then dropped (Microsoft Learn
"Receive change notifications through webhooks"). So these routes only verify and store: the
delta round runs later, in the connector's worker. A forged item is dropped and counted, and the
answer is still 202, so a prober learns nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request, Response

from app.api.errors import responses
from app.api.responses import raw_error
from app.connectors.graph.inbox import WebhookReceiver
from app.connectors.graph.notifications import MalformedNotification
from app.errors import DatabaseUnavailable, Malformed, PayloadTooLarge, RosterError

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/graph", tags=["graph webhooks"])

STORE_TIMEOUT = 2.5  # seconds: a 503 (Graph retries) beats an answer after Graph's 3 s
HANDSHAKE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Validation handshake: the URL-decoded `validationToken`, echoed",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    202: {
        "description": "Accepted (items with an unknown subscription or a wrong clientState "
        "are dropped silently)"
    },
    **responses(400, 413, 503),
}
TOKEN = Query(
    default=None,
    alias="validationToken",
    description="Sent by Graph when a subscription is created; echoed as text/plain",
)


@router.post(
    "/notifications", status_code=202, response_class=Response, responses=HANDSHAKE_RESPONSE
)
async def graph_notifications(request: Request, validation_token: str | None = TOKEN) -> Response:
    """Change notifications for the /users and /groups subscriptions."""
    return await _receive(request, validation_token, lifecycle=False)


@router.post("/lifecycle", status_code=202, response_class=Response, responses=HANDSHAKE_RESPONSE)
async def graph_lifecycle(request: Request, validation_token: str | None = TOKEN) -> Response:
    """Lifecycle notifications (reauthorizationRequired, subscriptionRemoved, missed)."""
    return await _receive(request, validation_token, lifecycle=True)


async def _receive(request: Request, token: str | None, *, lifecycle: bool) -> Response:
    receiver: WebhookReceiver = request.app.state.graph_webhooks
    if token is not None:
        status, body, headers = _handshake(receiver, token)
        return Response(body, status, headers=headers, media_type="text/plain; charset=utf-8")
    raw = await _read_body(request.stream(), request.app.state.settings.max_body_bytes)
    await _store(receiver, raw, lifecycle=lifecycle)
    return Response(status_code=202)


def _handshake(receiver: WebhookReceiver, token: str) -> tuple[int, bytes, dict[str, str]]:
    # Already URL-decoded (parse_qsl, as Starlette does); Graph compares the decoded text.
    receiver.stats.handshakes += 1
    return 200, token.encode("utf-8"), {"X-Content-Type-Options": "nosniff"}


async def _store(receiver: WebhookReceiver, body: bytes, *, lifecycle: bool) -> None:
    """Parse, verify and store; raises Malformed (400) or DatabaseUnavailable (503)."""
    try:
        async with asyncio.timeout(STORE_TIMEOUT):
            await receiver.receive(body, lifecycle=lifecycle)
    except MalformedNotification as exc:
        raise Malformed(str(exc)) from exc
    except Exception as exc:  # TimeoutError included
        logger.error("graph notifications not stored, answering 503 so Graph retries: error=%s",
                     type(exc).__name__)  # fmt: skip
        raise DatabaseUnavailable("notifications could not be stored; retry later") from exc


async def _read_body(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


class GraphWebhookFastPath:
    """Answers the two webhook routes before FastAPI's routing and middleware.

    FastAPI's router costs more CPU per request than verifying and storing a notification, and
    Graph's delivery rate is ours to absorb. Same bytes as the documented routes above, which
    stay in the OpenAPI document and answer when the app runs without this wrapper.
    """

    def __init__(self, app: Any, receiver: WebhookReceiver, *, max_bytes: int) -> None:
        self.app = app
        self.receiver = receiver
        self.max_bytes = max_bytes

    def __getattr__(self, name: str) -> Any:
        """Stand in for the wrapped FastAPI app (`state`, `router`) where tests reach for it."""
        if name == "app":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        lifecycle = _ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if lifecycle is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status, body, headers = await self._answer(scope, receive, lifecycle=lifecycle)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(
        self, scope: dict[str, Any], receive: Any, *, lifecycle: bool
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                               keep_blank_values=True))  # fmt: skip
        token = query.get("validationToken")
        if token is not None:
            status, body, headers = _handshake(self.receiver, token)
            return (
                status,
                body,
                [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ],
            )
        try:
            raw = await _read_body(_chunks(receive), self.max_bytes)
            await _store(self.receiver, raw, lifecycle=lifecycle)
        except RosterError as exc:
            status, payload, headers_out = raw_error(
                exc.status_code, type(exc).__name__, exc.message
            )
            return status, payload, list(headers_out)
        return 202, b"", [(b"content-length", b"0")]


_ROUTES = {"/v1/graph/notifications": False, "/v1/graph/lifecycle": True}


async def _chunks(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return

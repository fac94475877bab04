"""Refuse oversize request bodies before anyone parses them (413, nothing applied).

The body is read here first (at most `max_bytes` + 1), then replayed to the app, so a chunked
upload without Content-Length is bounded too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.api.responses import RawAnswer, raw_error


class BodySizeLimit:
    """`routes` gives some paths their own limit (spreadsheet uploads: `max_import_bytes`)."""

    def __init__(
        self, app: Any, *, max_bytes: int, routes: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.routes = dict(routes or {})
        # One precomputed 413 per limit: a refusal costs no JSON encoding.
        self._refusals = {
            limit: raw_error(413, "PayloadTooLarge", f"request body over {limit} bytes")
            for limit in {max_bytes, *self.routes.values()}
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.routes.get(scope["path"].rstrip("/") or "/", self.max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(send, limit)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            message: dict[str, Any] = await receive()
            return message

        await self.app(scope, replay, send)

    async def _reject(self, send: Any, limit: int) -> None:
        answer: RawAnswer = self._refusals[limit]
        await send({"type": "http.response.start", "status": 413, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body})

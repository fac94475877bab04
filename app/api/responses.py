"""How every answer leaves the API: JSON by orjson, and the one error shape with its headers.

An error is `{"error": "<Kind>", "detail": "<message>"}` (plus route-specific fields, such as the
lookup fields of a tempfail) and every 503 carries `Retry-After: RETRY_AFTER`. FastAPI handlers
use `error_response`; the raw-ASGI fast paths use `raw_error`, usually once at import, so the hot
path sends precomputed bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson
from starlette.responses import Response

RETRY_AFTER = 30
"""Seconds a client should wait after any 503: long enough for an index poll or a DC failover."""
RETRY_AFTER_HEADER = str(RETRY_AFTER)

_JSON = (b"content-type", b"application/json")
_RETRY = (b"retry-after", RETRY_AFTER_HEADER.encode())


class JsonResponse(Response):
    """A JSON response rendered with orjson (FastAPI's own ORJSONResponse is deprecated)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class RawAnswer(NamedTuple):
    """A whole HTTP answer for raw ASGI: status, body and header pairs, ready to send."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]


def error_body(kind: str, detail: str, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`fields` first, then `error` and `detail`, which no field can overwrite."""
    return {**(fields or {}), "error": kind, "detail": detail}


def error_headers(status: int, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's headers (a 429 brings its computed wait); a 503 always says `RETRY_AFTER`."""
    out = dict(headers or {})
    if status == 503:
        for name in [name for name in out if name.lower() == "retry-after"]:
            del out[name]
        out["Retry-After"] = RETRY_AFTER_HEADER
    return out


def error_response(
    status: int,
    kind: str,
    detail: str,
    *,
    fields: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JsonResponse:
    return JsonResponse(
        error_body(kind, detail, fields), status_code=status, headers=error_headers(status, headers)
    )


def raw_error(
    status: int, kind: str, detail: str, fields: Mapping[str, Any] | None = None
) -> RawAnswer:
    """The same answer as `error_response`, as bytes for a raw-ASGI path."""
    return json_answer(status, orjson.dumps(error_body(kind, detail, fields)))


def json_answer(status: int, payload: bytes) -> RawAnswer:
    """A non-error JSON answer for a raw-ASGI path (a 503 still gets `Retry-After`)."""
    headers = [_JSON, (b"content-length", str(len(payload)).encode())]
    if status == 503:
        headers.append(_RETRY)
    return RawAnswer(status, payload, tuple(headers))

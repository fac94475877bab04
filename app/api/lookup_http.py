"""The lookup answer on HTTP, shared by the FastAPI route and the raw-ASGI fast path.

A gateway asks this route for every RCPT, so it must not pay FastAPI's full per-request cost
(~127 µs of CPU here against a ~50 µs budget): `LookupFastPath` answers
`GET /v1/recipients/{address}` before FastAPI's routing and middleware, with the very same bytes
as the documented route, which stays in the OpenAPI document and serves as the fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from app.api.metrics import Metrics
from app.api.responses import RawAnswer, json_answer, raw_error
from app.apikeys import KeyCache, Scope, rank_of
from app.directory.lookup import Found, LookupIndex, result_of
from app.directory.verdicts import LookupResult, Reason, Verdict

logger = logging.getLogger(__name__)

_ERROR_KIND = {
    Reason.MALFORMED: ("Malformed", 400),
    Reason.UNKNOWN_RECIPIENT: ("NotFound", 404),
    Reason.DOMAIN_NOT_ACCEPTED: ("NotFound", 404),
    Reason.DISABLED: ("NotFound", 404),
}
_DETAIL = {
    Reason.UNKNOWN_RECIPIENT: "no recipient has this address",
    Reason.DOMAIN_NOT_ACCEPTED: "the domain is not an accepted domain",
    Reason.DISABLED: "the recipient's account is disabled",
}
_TEMPFAIL_DETAIL = "the mirror cannot answer reliably; retry later"


_NOT_THEIRS: Found = (Verdict.REJECT, Reason.DOMAIN_NOT_ACCEPTED, None, None, None, None)


def restrict(found: Found, tenants: frozenset[str]) -> Found:
    """A tenant key's view: another tenant's domain is not an accepted domain."""
    tenant = found[4]
    if tenant is not None and tenant.id not in tenants:
        return _NOT_THEIRS
    return found


def safe_lookup(
    index: LookupIndex, address: str, tenants: frozenset[str] | None = None
) -> LookupResult:
    """Any failure on the lookup path becomes TEMPFAIL: "don't know" is never "no"."""
    try:
        if tenants is None:
            return index.lookup(address)
        return result_of(address, restrict(index.find(address), tenants))
    except Exception:
        logger.exception("lookup failed; answering tempfail")
        return LookupResult(address, Verdict.TEMPFAIL, Reason.UNAVAILABLE, detail="internal error")


def render(result: LookupResult) -> RawAnswer:
    """The answer for any verdict; reject and tempfail carry the lookup fields and the error."""
    body: dict[str, Any] = result.as_dict()
    if result.verdict is Verdict.ACCEPT:
        return json_answer(200, orjson.dumps(body))
    if result.verdict is Verdict.TEMPFAIL:
        return raw_error(503, "LookupUnavailable", result.detail or _TEMPFAIL_DETAIL, body)
    reason = result.reason or Reason.UNKNOWN_RECIPIENT
    kind, status = _ERROR_KIND.get(reason, ("NotFound", 404))
    return raw_error(status, kind, result.detail or _DETAIL.get(reason, ""), body)


_JSON = (b"content-type", b"application/json")
LOOKUP_RANK = rank_of(frozenset({Scope.LOOKUP.value}))
_PREFIX = "/v1/recipients/"
_PREFIX_LEN = len(_PREFIX)
# The key checks' answers never vary: built once, sent as they are.
_NO_KEY = raw_error(401, "Unauthorized", "missing Authorization: Bearer <api key>")
_UNKNOWN_KEY = raw_error(401, "Unauthorized", "unknown or revoked API key")
_NO_SCOPE = raw_error(403, "Forbidden", "this API key lacks the 'lookup' scope")
_KEY_CHECK_FAILED = raw_error(503, "LookupUnavailable", "cannot verify the API key; retry later")


class LookupFastPath:
    """Raw ASGI wrapper: single lookups skip FastAPI, everything else goes to it unchanged."""

    def __init__(self, app: Any, index: LookupIndex, keys: KeyCache, metrics: Metrics) -> None:
        self.app = app
        self.index = index
        self.keys = keys
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if (
                path.startswith(_PREFIX)
                and len(path) > _PREFIX_LEN
                and "/" not in path[_PREFIX_LEN:]
            ):
                status, payload, headers = await self._answer(scope, path[_PREFIX_LEN:])
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": payload})
                return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: dict[str, Any], address: str
    ) -> tuple[int, bytes, Sequence[tuple[bytes, bytes]]]:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
                break
        if not token:
            return _NO_KEY
        info = self.keys.info_for(token)
        if info is None:
            try:
                info = await self.keys.resolve(token)
            except Exception:
                logger.exception("API key check failed; answering tempfail")
                return _KEY_CHECK_FAILED
            if info is None:
                return _UNKNOWN_KEY
        if info.rank < LOOKUP_RANK:
            return _NO_SCOPE
        try:
            found = self.index.find(address)
        except Exception:
            logger.exception("lookup failed; answering tempfail")
            found = (Verdict.TEMPFAIL, Reason.UNAVAILABLE, None, None, None, "internal error")
        if info.tenants is not None:  # a global key pays only this test
            found = restrict(found, info.tenants)
        verdict, _, matched, entry, _, _ = found
        self.metrics.count_lookup("http", verdict.value)
        if verdict is Verdict.ACCEPT and entry is not None:
            # The accept answer straight from the entry: the same bytes as render(), ~1.5 µs less.
            profile, at = entry.profile, entry._primary
            payload = orjson.dumps(
                {
                    "address": address, "valid": True, "verdict": "accept", "reason": None,
                    "matched": matched, "primary": f"{entry.locals[at]}@{entry.domains[at]}",
                    "kind": profile.kind, "enabled": profile.enabled,
                    "recipient_id": entry.recipient_id, "tenant": entry.tenant.name,
                    "source": profile.source,
                }
            )  # fmt: skip
            return 200, payload, [_JSON, (b"content-length", str(len(payload)).encode())]
        return render(result_of(address, found))

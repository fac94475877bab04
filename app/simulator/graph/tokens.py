"""Opaque skip/delta tokens: signed so a client cannot forge or edit a position.

Graph documents its tokens as opaque strings to be sent back unchanged; the simulator encodes its
own position in them, so a client that parses or rewrites a link notices at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson


class TokenError(ValueError):
    """The token was not issued by this simulator (or was edited)."""


class TokenCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, payload: dict[str, Any]) -> str:
        body = orjson.dumps(payload)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode("ascii")

    def decode(self, token: str) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError) as exc:
            raise TokenError("malformed token") from exc
        mac, body = raw[:12], raw[12:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        if not hmac.compare_digest(mac, expected):
            raise TokenError("token signature mismatch")
        payload = orjson.loads(body)
        if not isinstance(payload, dict):
            raise TokenError("token payload is not an object")
        return payload

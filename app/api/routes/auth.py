"""Pass-through authentication: bind to Active Directory as the user, store nothing.

Rate limits are in-memory token buckets per process (per username and per client address): with
N replicas an attacker gets N times the budget, and a restart refills them. AD's own lockout
policy remains the backstop. The password is a SecretStr from the body to the single bind call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, SecretStr

from app.api.deps import AdminScope, SettingsDep
from app.api.errors import error_response, responses
from app.api.responses import JsonResponse
from app.api.schemas import Strict
from app.connectors.ldap.auth import AuthOutcome, verify_password

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/auth", tags=["auth"])

USERNAME_BURST, USERNAME_PER_MINUTE = 5, 5.0
CLIENT_BURST, CLIENT_PER_MINUTE = 60, 60.0


class AuthVerify(Strict):
    username: str = Field(min_length=1, max_length=256, examples=["alice@corp.example"])
    password: SecretStr = Field(max_length=1024)


class AuthVerifyResult(BaseModel):
    result: Literal["ok", "invalid", "disabled_or_locked", "unavailable"]


class AuthUnavailable(BaseModel):
    result: Literal["unavailable"] = "unavailable"
    error: str = Field(examples=["AuthUnavailable"])
    detail: str


class TokenBuckets:
    """One bucket per key: `burst` attempts at once, refilled at `per_minute`."""

    def __init__(
        self,
        burst: int,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def wait_seconds(self, key: str) -> float:
        """0 if an attempt is allowed now, else how long until one is."""
        level = self._level(key, self.clock())
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def take(self, key: str) -> None:
        now = self.clock()
        self._buckets[key] = (self._level(key, now) - 1.0, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]


class AuthRateLimiter:
    def __init__(
        self,
        *,
        username_burst: int = USERNAME_BURST,
        username_per_minute: float = USERNAME_PER_MINUTE,
        client_burst: int = CLIENT_BURST,
        client_per_minute: float = CLIENT_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = TokenBuckets(username_burst, username_per_minute, clock=clock)
        self.clients = TokenBuckets(client_burst, client_per_minute, clock=clock)

    def admit(self, username: str, client: str) -> float:
        """0 and one token taken from each bucket, or the seconds to wait (nothing taken)."""
        user_key = account_key(username)
        wait = max(self.users.wait_seconds(user_key), self.clients.wait_seconds(client))
        if wait == 0.0:
            self.users.take(user_key)
            self.clients.take(client)
        return wait


def account_key(username: str) -> str:
    """`alice`, `EXAMPLE\\alice` and `alice@corp.example` share one budget."""
    name = username.strip().lower().rpartition("\\")[2]
    return name.partition("@")[0] or name


def _limiter(request: Request) -> AuthRateLimiter:
    limiter: AuthRateLimiter | None = getattr(request.app.state, "auth_limiter", None)
    if limiter is None:
        limiter = request.app.state.auth_limiter = AuthRateLimiter()
    return limiter


@router.post(
    "/verify",
    dependencies=[AdminScope],
    response_model=AuthVerifyResult,
    responses={
        **responses(401, 403, 422, 429),
        503: {"model": AuthUnavailable, "description": "no domain controller could answer"},
    },
)
async def verify(
    body: AuthVerify, request: Request, settings: SettingsDep
) -> AuthVerifyResult | JsonResponse:
    """Check a password against AD in real time: ok, invalid or disabled_or_locked."""
    client = request.client.host if request.client else "unknown"
    wait = _limiter(request).admit(body.username, client)
    if wait > 0:
        logger.warning("auth verify rate limited: user=%s client=%s", body.username, client)
        return error_response(
            429,
            "TooManyRequests",
            "too many verification attempts for this username or client; try again later",
            **{"Retry-After": str(math.ceil(wait))},
        )
    outcome: AuthOutcome
    if settings.ldap is None:
        outcome = "unavailable"
        detail = "pass-through authentication needs an LDAP directory (ROSTER_LDAP__URL, ...)"
    else:
        outcome = await asyncio.to_thread(
            verify_password, settings.ldap, body.username, body.password
        )
        detail = "no domain controller could verify the password; try again later"
    if outcome == "unavailable":
        return JsonResponse(
            {"result": "unavailable", "error": "AuthUnavailable", "detail": detail},
            status_code=503,
            headers={"Retry-After": "30"},
        )
    return AuthVerifyResult(result=outcome)

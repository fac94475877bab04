"""The simulator's whole state and its control surface (the same calls as `/_control/...`).

Tests hold this object directly; the FastAPI app reads it per request. Faults follow Microsoft
Learn "Microsoft Graph throttling guidance" (https://learn.microsoft.com/graph/throttling):
429/503 with `Retry-After`.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from app.simulator.graph.auth import AuthState
from app.simulator.graph.delta import DeltaEngine
from app.simulator.graph.generator import TenantSpec, generate, tenant_domains
from app.simulator.graph.store import DirectoryStore

CORRUPTIONS = ("not_json", "missing_value", "foreign_link", "html_error", "missing_id")


@dataclass(frozen=True, slots=True)
class Throttle:
    status: int
    retry_after: int | None


class SimulatorState:
    """A simulated tenant: directory, delta engine, identity platform and injected faults."""

    def __init__(
        self,
        *,
        seed: int = 0,
        tenant_id: str = "contoso",
        client_id: str = "roster-client",
        client_secret: str = "roster-secret",  # noqa: S107 - a test double's well-known secret
        page_size: int = 100,
        members_page_size: int = 100,
        replay_rate: float = 0.0,
    ) -> None:
        self.store = DirectoryStore(seed)
        self.delta = DeltaEngine(
            self.store,
            page_size=page_size,
            members_page_size=members_page_size,
            replay_rate=replay_rate,
        )
        self.auth = AuthState(tenant_id=tenant_id)
        self.auth.add_client(client_id, secret=client_secret)
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.rate_429 = 0.0
        self.rate_503 = 0.0
        self.retry_after = 1
        self.requests = 0
        self._forced: deque[Throttle] = deque()
        self._corrupt: deque[str] = deque()
        self._lock = threading.Lock()

    @classmethod
    def seeded(
        cls, spec: TenantSpec | None = None, *, seed: int = 0, **kwargs: Any
    ) -> SimulatorState:
        """A state holding a generated tenant; `expected_accepted()` is the test oracle."""
        spec = spec or TenantSpec()
        state = cls(seed=seed, **kwargs)
        generate(state.store, spec)
        return state

    # ---- directory control
    def add_user(self, **props: Any) -> dict[str, Any]:
        props.setdefault("accountEnabled", True)
        props.setdefault("userType", "Member")
        props.setdefault("proxyAddresses", [f"SMTP:{props['mail']}"] if props.get("mail") else [])
        return self.store.create("users", props)

    def add_group(self, **props: Any) -> dict[str, Any]:
        props.setdefault("groupTypes", [])
        props.setdefault("mailEnabled", bool(props.get("mail")))
        props.setdefault("securityEnabled", not props.get("mail"))
        props.setdefault("proxyAddresses", [f"SMTP:{props['mail']}"] if props.get("mail") else [])
        return self.store.create("groups", props)

    def add_contact(self, **props: Any) -> dict[str, Any]:
        props.setdefault("proxyAddresses", [f"SMTP:{props['mail']}"] if props.get("mail") else [])
        return self.store.create("contacts", props)

    def update(self, obj_id: str, **props: Any) -> dict[str, Any]:
        return self.store.update(obj_id, props)

    def delete(self, obj_id: str, *, hard: bool = False) -> None:
        self.store.delete(obj_id, hard=hard)

    def restore(self, obj_id: str) -> dict[str, Any]:
        return self.store.restore(obj_id)

    def add_alias(self, obj_id: str, address: str) -> dict[str, Any]:
        return self.store.add_alias(obj_id, address)

    def remove_alias(self, obj_id: str, address: str) -> dict[str, Any]:
        return self.store.remove_alias(obj_id, address)

    def set_primary(self, obj_id: str, address: str) -> dict[str, Any]:
        return self.store.set_primary(obj_id, address)

    def add_member(self, group_id: str, member_id: str) -> None:
        self.store.add_member(group_id, member_id)

    def remove_member(self, group_id: str, member_id: str) -> None:
        self.store.remove_member(group_id, member_id)

    def set_domains(self, domains: list[dict[str, Any]] | None = None) -> None:
        self.store.domains = domains if domains is not None else tenant_domains(self.tenant_id)

    def expected_accepted(self) -> dict[str, str]:
        return self.store.expected_accepted()

    # ---- faults
    def expire_delta_tokens(self, code: str = "syncStateNotFound") -> None:
        """`syncStateNotFound` answers 400; `resyncRequired` answers 410 with a Location."""
        if code not in ("syncStateNotFound", "resyncRequired"):
            raise ValueError(f"unknown expiry code {code!r}")
        self.delta.expire_tokens(code)

    def set_throttling(self, *, rate_429: float = 0.0, rate_503: float = 0.0,
                       retry_after: int = 1) -> None:  # fmt: skip
        """Random 429/503 answers on Graph routes, each with `Retry-After: retry_after`."""
        self.rate_429, self.rate_503, self.retry_after = rate_429, rate_503, retry_after

    def throttle_next(
        self, *, retry_after: int | None = 1, status: int = 429, count: int = 1
    ) -> None:
        """The next `count` Graph requests are answered `status` (429, 503 or 504)."""
        with self._lock:
            self._forced.extend(Throttle(status, retry_after) for _ in range(count))

    def corrupt_next(self, kind: str) -> None:
        """The next delta page is broken: not_json, missing_value, foreign_link, html_error or
        missing_id (its first object loses its id)."""
        if kind not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {kind!r}")
        with self._lock:
            self._corrupt.append(kind)

    def revoke_tokens(self) -> None:
        self.auth.revoke_tokens()

    def reject_all_tokens(self, value: bool = True) -> None:
        self.auth.reject_all_tokens = value

    def next_throttle(self) -> Throttle | None:
        with self._lock:
            self.requests += 1
            if self._forced:
                return self._forced.popleft()
        roll = self.store.rng.random()
        if roll < self.rate_429:
            return Throttle(429, self.retry_after)
        if roll < self.rate_429 + self.rate_503:
            return Throttle(503, self.retry_after)
        return None

    def next_corruption(self) -> str | None:
        with self._lock:
            return self._corrupt.popleft() if self._corrupt else None

    def snapshot(self) -> dict[str, Any]:
        """Counts for the control API and the CLI banner."""
        with self.store.lock:
            return {
                "tenant": self.tenant_id,
                "users": len(self.store.live["users"]),
                "groups": len(self.store.live["groups"]),
                "contacts": len(self.store.live["contacts"]),
                "memberships": sum(len(m) for m in self.store.members.values()),
                "requests": self.requests,
                "tokens_issued": self.auth.issued,
            }

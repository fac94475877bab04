"""API keys: shown once, stored as SHA-256 hashes; scopes nest admin > write > read > lookup.

A key may be restricted to some tenants (`KeyInfo.tenants`, tenant ids; None = global): every
route gets the key's `KeyInfo` and asks it (`allows`, `check`) before showing or changing a
tenant's object. `KeyCache` answers the hot path from memory; it is reloaded with the lookup
index, so a revoked key stops working within one poll interval in every process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.directory.models import ApiKey, Tenant
from app.errors import InvalidInput, NotFound

KEY_PREFIX = "rst_"


class Scope(StrEnum):
    LOOKUP = "lookup"
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_RANK = {Scope.LOOKUP: 0, Scope.READ: 1, Scope.WRITE: 2, Scope.ADMIN: 3}


_RANK_BY_NAME = {scope.value: rank for scope, rank in _RANK.items()}


def rank_of(scopes: frozenset[str]) -> int:
    return max((_RANK_BY_NAME.get(s, -1) for s in scopes), default=-1)


def grants(scopes: frozenset[str], needed: Scope) -> bool:
    """A key holding a higher scope may do everything a lower one may."""
    return rank_of(scopes) >= _RANK[needed]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a request's key may do: its scopes, and the tenants it is restricted to."""

    scopes: frozenset[str]
    rank: int
    tenants: frozenset[str] | None  # tenant ids; None = every tenant (a global key)

    @classmethod
    def of(cls, scopes: list[str], tenant_ids: list[str] | None) -> KeyInfo:
        frozen = frozenset(scopes)
        tenants = None if tenant_ids is None else frozenset(tenant_ids)
        return cls(frozen, rank_of(frozen), tenants)

    def allows(self, tenant_id: str | None) -> bool:
        return self.tenants is None or tenant_id in self.tenants

    def check(self, tenant_id: str | None, absent: str) -> None:
        """A tenant key reaching for another tenant's object: 404 with `absent`, the very
        message the route gives for an object that does not exist."""
        if not self.allows(tenant_id):
            raise NotFound(absent)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


async def tenant_ids_of(session: AsyncSession, names: list[str]) -> list[str]:
    """Tenant names to ids; an unknown name is bad input naming it."""
    wanted = sorted({n.strip() for n in names})
    query = select(Tenant.name, Tenant.id).where(Tenant.name.in_(wanted))
    found: dict[str, str] = {row.name: row.id for row in await session.execute(query)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise InvalidInput(f"unknown tenant: {', '.join(missing)}")
    return [found[n] for n in wanted]


async def create_key(
    session: AsyncSession, name: str, scopes: list[str], tenants: list[str] | None = None
) -> tuple[ApiKey, str]:
    """A key for `tenants` (names) only, or a global key when None/empty."""
    if not name.strip():
        raise InvalidInput("an API key needs a name")
    try:
        parsed = sorted({Scope(s) for s in scopes}, key=_RANK.__getitem__)
    except ValueError as exc:
        raise InvalidInput(f"unknown scope; choose from {', '.join(Scope)}") from exc
    if not parsed:
        raise InvalidInput(f"an API key needs at least one scope ({', '.join(Scope)})")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name.strip(),
        prefix=key[:8],
        key_hash=hash_key(key),
        scopes=[s.value for s in parsed],
        tenant_ids=await tenant_ids_of(session, tenants) if tenants else None,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    return row, key


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


async def describe_keys(session: AsyncSession, rows: list[ApiKey]) -> list[dict[str, Any]]:
    """What may be shown of keys: never the hash, never the key."""
    tenant_rows = await session.execute(select(Tenant.id, Tenant.name))
    names: dict[str, str] = {row.id: row.name for row in tenant_rows}
    return [
        {
            "id": row.id,
            "name": row.name,
            "prefix": row.prefix,
            "scopes": list(row.scopes),
            "tenants": None
            if row.tenant_ids is None
            else sorted(names.get(t, t) for t in row.tenant_ids),
            "created_at": row.created_at,
            "revoked_at": row.revoked_at,
        }
        for row in rows
    ]


async def revoke_key(session: AsyncSession, key_id_or_name: str) -> ApiKey:
    row = await session.get(ApiKey, key_id_or_name) or await session.scalar(
        select(ApiKey).where(ApiKey.name == key_id_or_name, ApiKey.revoked_at.is_(None))
    )
    if row is None:
        raise NotFound(f"no API key with id or name {key_id_or_name!r}")
    if row.revoked_at is None:
        await session.execute(
            update(ApiKey).where(ApiKey.id == row.id).values(revoked_at=datetime.now(UTC))
        )
    return row


class KeyCache:
    MEMO_SIZE = 1024

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._keys: dict[str, KeyInfo] = {}
        # key -> KeyInfo, so the hot path skips hashing; cleared on every reload.
        self._memo: dict[str, KeyInfo] = {}

    def info_for(self, key: str) -> KeyInfo | None:
        """A known, unrevoked key's KeyInfo, from memory only (None = ask resolve)."""
        info = self._memo.get(key)
        if info is None:
            info = self._keys.get(hash_key(key))
            if info is None:
                return None
            if len(self._memo) < self.MEMO_SIZE:
                self._memo[key] = info
        return info

    async def resolve(self, key: str) -> KeyInfo | None:
        """Memory first; a miss asks the database once (a key created by another process)."""
        digest = hash_key(key)
        found = self._keys.get(digest)
        if found is not None:
            return found
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(ApiKey.scopes, ApiKey.tenant_ids).where(
                        ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        info = KeyInfo.of(row[0], row[1])
        self._keys[digest] = info
        return info

    async def reload(self, conn: AsyncConnection) -> None:
        rows = await conn.execute(
            select(ApiKey.key_hash, ApiKey.scopes, ApiKey.tenant_ids).where(
                ApiKey.revoked_at.is_(None)
            )
        )
        self._keys = {digest: KeyInfo.of(scopes, tenants) for digest, scopes, tenants in rows}
        self._memo = {}

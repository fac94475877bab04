"""API keys: shown once, stored as SHA-256 hashes; scopes nest admin > write > read > lookup.

`KeyCache` answers the hot path from memory; it is reloaded with the lookup index, so a revoked
key stops working within one poll interval in every process.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.directory.models import ApiKey
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


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


async def create_key(session: AsyncSession, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
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
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    return row, key


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


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
        self._scopes: dict[str, frozenset[str]] = {}
        # key -> highest scope rank, so the hot path skips hashing; cleared on every reload.
        self._memo: dict[str, int] = {}

    def rank_for(self, key: str) -> int | None:
        """Highest scope rank of a known, unrevoked key, from memory only (None = ask resolve)."""
        rank = self._memo.get(key)
        if rank is None:
            scopes = self._scopes.get(hash_key(key))
            if scopes is None:
                return None
            rank = rank_of(scopes)
            if len(self._memo) < self.MEMO_SIZE:
                self._memo[key] = rank
        return rank

    async def resolve(self, key: str) -> frozenset[str] | None:
        """Memory first; a miss asks the database once (a key created by another process)."""
        digest = hash_key(key)
        found = self._scopes.get(digest)
        if found is not None:
            return found
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(ApiKey.scopes).where(
                        ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
                    )
                )
            ).first()
        if row is None:
            return None
        scopes = frozenset(row[0])
        self._scopes[digest] = scopes
        return scopes

    async def reload(self, conn: AsyncConnection) -> None:
        rows = await conn.execute(
            select(ApiKey.key_hash, ApiKey.scopes).where(ApiKey.revoked_at.is_(None))
        )
        self._scopes = {digest: frozenset(scopes) for digest, scopes in rows}
        self._memo = {}

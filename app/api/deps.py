"""Request dependencies: settings, sessions, the index and API-key scopes.

A key restricted to tenants is let through only by the `*Key` dependencies, which hand the route
the key's `KeyInfo` to filter by; a route still on the plain `*Scope` dependencies answers such
a key 404, as if nothing were there. So a route that was never taught about tenants fails
closed instead of showing a tenant key everything (docs/contracts.md §6).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.apikeys import KeyCache, KeyInfo, Scope
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex
from app.errors import Forbidden, NotFound, Unauthorized
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session  # closing without commit rolls back


def get_index(request: Request) -> LookupIndex:
    index: LookupIndex = request.app.state.index
    return index


def get_index_sync(request: Request) -> IndexSync:
    sync: IndexSync = request.app.state.index_sync
    return sync


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
IndexDep = Annotated[LookupIndex, Depends(get_index)]
IndexSyncDep = Annotated[IndexSync, Depends(get_index_sync)]


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <api key>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing Authorization: Bearer <api key>")
    return token.strip()


def require(
    scope: Scope, *, tenant_aware: bool = False
) -> Callable[[Request], Coroutine[Any, Any, KeyInfo]]:
    needed = KeyInfo.of([scope.value], None).rank

    async def _check(request: Request) -> KeyInfo:
        token = bearer_token(request.headers.get("authorization"))
        cache: KeyCache = request.app.state.keys
        info = await cache.resolve(token)
        if info is None:
            raise Unauthorized("unknown or revoked API key")
        if info.rank < needed:
            raise Forbidden(f"this API key lacks the {scope.value!r} scope")
        if info.tenants is not None and not tenant_aware:
            raise NotFound("not found")
        return info

    return _check


# Global keys only: a tenant key gets 404 here.
LookupScope = Depends(require(Scope.LOOKUP))
ReadScope = Depends(require(Scope.READ))
WriteScope = Depends(require(Scope.WRITE))
AdminScope = Depends(require(Scope.ADMIN))

# Any key, restricted to its tenants: the route filters with the KeyInfo it gets.
LookupKey = Annotated[KeyInfo, Depends(require(Scope.LOOKUP, tenant_aware=True))]
ReadKey = Annotated[KeyInfo, Depends(require(Scope.READ, tenant_aware=True))]
WriteKey = Annotated[KeyInfo, Depends(require(Scope.WRITE, tenant_aware=True))]
AdminKey = Annotated[KeyInfo, Depends(require(Scope.ADMIN, tenant_aware=True))]

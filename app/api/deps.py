"""Request dependencies: settings, sessions, the index and API-key scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.apikeys import KeyCache, Scope, grants
from app.directory.index_sync import IndexSync
from app.directory.lookup import LookupIndex
from app.errors import Forbidden, Unauthorized
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


def require(scope: Scope) -> Callable[[Request], Coroutine[Any, Any, None]]:
    async def _check(request: Request) -> None:
        token = bearer_token(request.headers.get("authorization"))
        cache: KeyCache = request.app.state.keys
        scopes = await cache.resolve(token)
        if scopes is None:
            raise Unauthorized("unknown or revoked API key")
        if not grants(scopes, scope):
            raise Forbidden(f"this API key lacks the {scope.value!r} scope")

    return _check


LookupScope = Depends(require(Scope.LOOKUP))
ReadScope = Depends(require(Scope.READ))
WriteScope = Depends(require(Scope.WRITE))
AdminScope = Depends(require(Scope.ADMIN))

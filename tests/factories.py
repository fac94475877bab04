"""Small keyword-only helpers that put test data into the mirror through the real service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.apikeys import create_key
from app.directory import service
from app.directory.models import Connector
from app.directory.records import ChangeSet, RecipientKind, RecipientRecord, SourceKind
from app.directory.tenants import add_domain, ensure_connector, ensure_tenant


async def make_domain(session: AsyncSession, name: str, *, tenant: str = "default") -> None:
    await add_domain(session, await ensure_tenant(session, tenant), name)


async def make_connector(
    session: AsyncSession,
    kind: SourceKind,
    *,
    tenant: str = "default",
    name: str | None = None,
    ready: bool = True,
    last_success: datetime | None = None,
) -> Connector:
    connector = await ensure_connector(session, await ensure_tenant(session, tenant), kind, name)
    if kind.is_authoritative and ready:
        connector.first_round_done = True
        connector.state = "ready"
        connector.last_success_at = last_success or datetime.now(UTC)
        await session.flush()
    return connector


async def make_recipient(
    session: AsyncSession,
    connector: Connector,
    *,
    external_id: str,
    addresses: Sequence[str],
    kind: RecipientKind = RecipientKind.USER,
    enabled: bool = True,
    display_name: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> str:
    record = RecipientRecord(
        external_id=external_id,
        kind=kind,
        addresses=tuple(addresses),
        display_name=display_name,
        enabled=enabled,
        attributes=attributes or {},
    )
    result = await service.apply(
        session, ChangeSet(upserts=[record]), connector=service.ConnectorRef.of(connector)
    )
    return result.recipient_ids[external_id]


async def make_key(session: AsyncSession, *scopes: str, name: str = "test") -> str:
    _, key = await create_key(session, name, list(scopes))
    return key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def api_key(app: Any, *scopes: str) -> str:
    """Create a key through the app's own database, as `roster apikey create` would."""
    fastapi_app = app.app.app
    async with fastapi_app.state.sessionmaker.begin() as session:
        return await make_key(session, *scopes)


async def api_domain(client: httpx.AsyncClient, key: str, name: str) -> None:
    response = await client.post("/v1/domains", json={"name": name}, headers=auth(key))
    assert response.status_code == 201, response.text

"""Which Source runs a connector row: env settings configure the default tenant's directories."""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.connectors.base import Source, SourceKind
from app.connectors.graph.config import GraphSettings
from app.connectors.ldap.config import LdapSettings
from app.directory.models import Connector
from app.directory.tenants import DEFAULT_TENANT, add_domain, ensure_connector, ensure_tenant
from app.errors import PermanentSourceError, RosterError

logger = logging.getLogger(__name__)


class EnvDirectories(Protocol):
    """The directories configured in the environment; `app.settings.Settings` is one. Typed by
    what is read, so this layer never imports the settings above it."""

    @property
    def graph(self) -> GraphSettings | None: ...

    @property
    def ldap(self) -> LdapSettings | None: ...


SYNCED_KINDS = (SourceKind.GRAPH, SourceKind.LDAP)


async def ensure_env_connectors(session: AsyncSession, settings: EnvDirectories) -> list[Connector]:
    """Connector rows for the directories configured in the environment (ROSTER_GRAPH__*, ...)."""
    tenant = await ensure_tenant(session, DEFAULT_TENANT)
    rows = []
    if settings.graph is not None:
        rows.append(await ensure_connector(session, tenant, SourceKind.GRAPH, "graph"))
    if settings.ldap is not None:
        rows.append(await ensure_connector(session, tenant, SourceKind.LDAP, "ldap"))
        # Configured, not discovered: accept them before the first round, so its lookups defer
        # (not ready) instead of answering "domain not accepted".
        for name in settings.ldap.domains:
            try:
                await add_domain(session, tenant, name, source=SourceKind.LDAP.value)
            except RosterError as exc:
                logger.warning("LDAP domain not added: domain=%s reason=%s", name, exc.message)
    return rows


def build_source(settings: EnvDirectories, connector: Connector) -> Source:
    kind = SourceKind(connector.kind)
    if kind is SourceKind.GRAPH and settings.graph is not None:
        from app.connectors.graph.source import GraphSource

        return GraphSource(settings.graph)
    if kind is SourceKind.LDAP and settings.ldap is not None:
        from app.connectors.ldap.source import LdapSource

        return LdapSource(settings.ldap, domains=settings.ldap.domains or None)
    raise PermanentSourceError(
        f"connector {connector.name} ({connector.kind}) has no settings in this process; "
        f"set ROSTER_{connector.kind.upper()}__* to run it"
    )


def poll_interval(settings: EnvDirectories, connector: Connector) -> float:
    """Seconds between scheduled rounds; never more than a day (Graph delta tokens last 7 days)."""
    day = 86_400.0
    if connector.kind == SourceKind.GRAPH.value and settings.graph is not None:
        return min(settings.graph.poll_interval.total_seconds(), day)
    if connector.kind == SourceKind.LDAP.value and settings.ldap is not None:
        return min(settings.ldap.poll_interval.total_seconds(), day)
    return day

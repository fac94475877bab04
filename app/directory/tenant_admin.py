"""Managing tenants: create, read, change, remove, and the policy that overrides global settings.

A tenant's policy is four nullable settings (`None` inherits the deployment's value). The lookup
index reads `reject_disabled` and `max_staleness` on every poll (index_sync), the deletion guard
reads the thresholds when a round settles (connectors/guard.py); a change here is recorded in the
`changes` log so every process sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.changelog import record_changes
from app.directory.models import Connector, Domain, Tenant, new_id
from app.directory.tenants import DEFAULT_TENANT, ensure_tenant
from app.errors import Conflict, InvalidInput, NotFound

NAME_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
NAME_RULE = (
    "must be a lower-case slug: a-z, 0-9 and '-', 1-63 characters, "
    "starting and ending with a letter or digit"
)
_LISTED = 10  # names shown in a 409's detail before "and N more"


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    reject_disabled: bool | None = None
    max_staleness: int | None = None  # seconds; 0 = never stale
    delete_threshold: int | None = None  # 0 disables the guard
    delete_threshold_percent: float | None = None

    @classmethod
    def of(cls, tenant: Tenant) -> TenantPolicy:
        return cls(
            tenant.reject_disabled,
            tenant.max_staleness,
            tenant.delete_threshold,
            tenant.delete_threshold_percent,
        )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


POLICY_FIELDS = tuple(f.name for f in fields(TenantPolicy))


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(f"name: {NAME_RULE} (got {name!r})")
    return name


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    return list(await session.scalars(select(Tenant).order_by(Tenant.name)))


async def get_tenant(session: AsyncSession, name: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"tenant {name} does not exist")
    return tenant


async def get_or_default(session: AsyncSession, name: str) -> Tenant:
    """The named tenant; `default` exists on first use, as everywhere else."""
    if name == DEFAULT_TENANT:
        return await ensure_tenant(session)
    return await get_tenant(session, name)


async def create_tenant(
    session: AsyncSession,
    name: str,
    *,
    display_name: str | None = None,
    policy: TenantPolicy | None = None,
) -> Tenant:
    check_name(name)
    if await session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise Conflict(f"tenant {name} already exists")
    now = datetime.now(UTC)
    tenant = Tenant(id=new_id(), name=name, display_name=display_name, created_at=now)
    _set_policy(tenant, (policy or TenantPolicy()).as_dict())
    session.add(tenant)
    await session.flush()
    await _record(session, tenant, now)
    return tenant


async def update_tenant(
    session: AsyncSession,
    name: str,
    *,
    display_name: str | None = None,
    set_display_name: bool = False,
    policy: dict[str, Any] | None = None,
) -> Tenant:
    """Change the display name (when `set_display_name`) and the policy keys given (a key set
    to None inherits again); keys not given keep their value."""
    tenant = await get_or_default(session, name)
    if set_display_name:
        tenant.display_name = display_name
    if policy:
        _set_policy(tenant, policy)
    await session.flush()
    await _record(session, tenant, datetime.now(UTC))
    return tenant


async def delete_tenant(session: AsyncSession, name: str) -> None:
    """Remove an empty tenant; 409 naming what it still holds (nothing is removed then)."""
    if name == DEFAULT_TENANT:
        raise Conflict("the default tenant cannot be deleted")
    tenant = await get_tenant(session, name)
    domains = list(
        await session.scalars(
            select(Domain.name).where(Domain.tenant_id == tenant.id).order_by(Domain.name)
        )
    )
    connectors = [
        f"{cname} ({kind})"
        for cname, kind in await session.execute(
            select(Connector.name, Connector.kind)
            .where(Connector.tenant_id == tenant.id)
            .order_by(Connector.name)
        )
    ]
    held = [f"{label} {_names(items)}" for label, items in
            (("domains", domains), ("connectors", connectors)) if items]  # fmt: skip
    if held:
        raise Conflict(
            f"tenant {name} still has {' and '.join(held)}; remove them before the tenant"
        )
    await session.delete(tenant)
    await session.flush()
    await _record(session, tenant, datetime.now(UTC))


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown if len(items) <= _LISTED else f"{shown} and {len(items) - _LISTED} more"


def _set_policy(tenant: Tenant, policy: dict[str, Any]) -> None:
    for key, value in policy.items():
        if key not in POLICY_FIELDS:
            raise InvalidInput(f"policy.{key}: unknown policy setting")
        if key != "reject_disabled" and value is not None and value < 0:
            raise InvalidInput(f"policy.{key}: must be 0 or more (got {value})")
        if key == "delete_threshold_percent" and value is not None and value > 100:
            raise InvalidInput(f"policy.{key}: must be at most 100 (got {value})")
        setattr(tenant, key, value)


async def _record(session: AsyncSession, tenant: Tenant, at: datetime) -> None:
    await record_changes(
        session, tenant.id, [None], action="tenant", source="manual", at=at, detail=tenant.name
    )

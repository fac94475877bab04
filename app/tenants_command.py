"""`roster tenants …`: manage tenants straight on the database (docs/contracts.md §11).

Beside cli.py (which only registers `tenants_cli`) so cli.py stays a thin parser; the rules
(names, the 409 while a tenant holds domains or connectors, the policy's ranges) live in
app.directory.tenant_admin, shared with `/v1/tenants`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import RosterError
from app.settings import Settings

T = TypeVar("T")

tenants_cli = typer.Typer(
    help="Tenants: the organisations this deployment serves, and their policy.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _on_database(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction on ROSTER_DATABASE_URL; a refused change exits 1."""
    from app.db.engine import create_engine, create_sessionmaker

    async def run() -> T:
        engine = create_engine(Settings().database_url)
        try:
            async with create_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except RosterError as exc:
        _fail(exc.message, 75 if exc.status_code == 503 else 1)


def _as_dict(tenant: Any) -> dict[str, Any]:
    from app.directory.tenant_admin import TenantPolicy

    return {
        "id": tenant.id,
        "name": tenant.name,
        "display_name": tenant.display_name,
        "created_at": tenant.created_at.isoformat(),
        "policy": TenantPolicy.of(tenant).as_dict(),
    }


def _policy_text(policy: dict[str, Any]) -> str:
    set_ = [f"{key}={value}" for key, value in policy.items() if value is not None]
    return ", ".join(set_) or "inherits"


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


@tenants_cli.command("add")
def add(
    name: Annotated[str, typer.Argument(help="lower-case slug, e.g. fabrikam")],
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    reject_disabled: Annotated[
        bool | None,
        typer.Option(
            "--reject-disabled/--no-reject-disabled",
            help="reject this tenant's disabled mailboxes (default: ROSTER_REJECT_DISABLED)",
            show_default=False,
        ),
    ] = None,
    max_staleness: Annotated[
        int | None, typer.Option(help="seconds without a sync before lookups defer; 0 never")
    ] = None,
    delete_threshold: Annotated[
        int | None, typer.Option(help="hold a round's deletions above this count; 0 disables")
    ] = None,
    delete_threshold_percent: Annotated[
        float | None, typer.Option(help="also hold above this share of a connector's objects")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a tenant; policy options not given inherit the global settings."""
    from app.directory.tenant_admin import TenantPolicy, create_tenant

    policy = TenantPolicy(
        reject_disabled, max_staleness, delete_threshold, delete_threshold_percent
    )

    async def work(session: AsyncSession) -> dict[str, Any]:
        tenant = await create_tenant(session, name, display_name=display_name, policy=policy)
        return _as_dict(tenant)

    created = _on_database(work)
    if as_json:
        _print_json(created)
    else:
        out.print(
            f"created tenant {created['name']} ({created['id']}); "
            f"policy: {_policy_text(created['policy'])}",
            highlight=False,
        )


@tenants_cli.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List tenants with their policy (JSON: one array, the API's item shape)."""
    from app.directory.tenant_admin import list_tenants

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        return [_as_dict(t) for t in await list_tenants(session)]

    tenants = _on_database(work)
    if as_json:
        _print_json(tenants)
        return
    table = Table("name", "display name", "policy", "created")
    for t in tenants:
        table.add_row(
            t["name"], t["display_name"] or "", _policy_text(t["policy"]), t["created_at"]
        )
    out.print(table)


@tenants_cli.command("show")
def show(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One tenant, its policy (null inherits) and its domains."""
    from app.directory.tenant_admin import get_tenant
    from app.directory.tenants import list_domains

    async def work(session: AsyncSession) -> dict[str, Any]:
        tenant = await get_tenant(session, name)
        domains = [d.name for d, owner in await list_domains(session) if owner == name]
        return _as_dict(tenant) | {"domains": domains}

    tenant = _on_database(work)
    if as_json:
        _print_json(tenant)
        return
    out.print(f"tenant {tenant['name']} ({tenant['id']})", highlight=False)
    out.print(f"  display name: {tenant['display_name'] or ''}", highlight=False)
    out.print(f"  created: {tenant['created_at']}", highlight=False)
    for key, value in tenant["policy"].items():
        shown = "inherit" if value is None else str(value).lower()
        out.print(f"  {key}: {shown}", highlight=False)
    out.print(f"  domains: {', '.join(tenant['domains']) or 'none'}", highlight=False)


@tenants_cli.command("remove")
def remove(name: str) -> None:
    """Remove a tenant; refused (exit 1) while it has domains or connectors, or is `default`."""
    from app.directory.tenant_admin import delete_tenant

    _on_database(lambda session: delete_tenant(session, name))
    out.print(f"removed tenant {name}", highlight=False)

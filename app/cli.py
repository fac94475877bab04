"""The `roster` command line. Each command parses, builds Settings, and calls a package function.

`lookup`, `status`, `users`, `domains`, `tenants` and `apikey` work straight on the database
named by ROSTER_DATABASE_URL; no running server is needed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import RosterError
from app.settings import Settings
from app.tenants_command import tenants_cli

T = TypeVar("T")

cli = typer.Typer(help="Roster: valid-recipient lookups for mail gateways.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
apikey_cli = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
users_cli = typer.Typer(help="Manual users.", no_args_is_help=True)
domains_cli = typer.Typer(help="Accepted domains.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(apikey_cli, name="apikey")
cli.add_typer(users_cli, name="users")
cli.add_typer(domains_cli, name="domains")
graph_cli = typer.Typer(help="Microsoft Graph change notifications.", no_args_is_help=True)
cli.add_typer(graph_cli, name="graph")
connectors_cli = typer.Typer(help="Directory connectors.", no_args_is_help=True)
cli.add_typer(connectors_cli, name="connectors")
cli.add_typer(tenants_cli, name="tenants")  # bodies in app/tenants_command.py

out = Console()
err = Console(stderr=True)

EXIT_TEMPFAIL = 75  # EX_TEMPFAIL from sysexits.h, as mail tools expect


def main() -> None:
    cli()


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _run(work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    settings = Settings()
    try:
        return asyncio.run(work(settings))
    except RosterError as exc:
        _fail(exc.message, 75 if exc.status_code == 503 else 1)


async def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from app.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="HTTP listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP listen port")] = 8000,
) -> None:
    """Run the HTTP API, the mail-protocol listeners and the sync workers."""
    from app.serve import run_server

    run_server(Settings(), host=host, port=port)


@cli.command()
def lookup(
    addresses: Annotated[list[str], typer.Argument(help="addresses to check")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Check addresses. Exit 0 if all accept, 1 if any reject, 75 if any tempfail."""
    from app.db.engine import create_engine
    from app.directory.addresses import normalize, subaddress_base
    from app.directory.index_sync import IndexSync
    from app.directory.lookup import LookupIndex, LookupOptions
    from app.directory.verdicts import LookupResult, Reason, Verdict
    from app.errors import Malformed

    async def work(settings: Settings) -> list[LookupResult]:
        wanted: set[str] = set()
        for raw in addresses:
            try:
                address = normalize(raw)
            except Malformed:
                continue
            wanted.add(address)
            base = subaddress_base(address, settings.recipient_delimiter)
            if base:
                wanted.add(base)
        engine = create_engine(settings.database_url, read_only=True)
        index = LookupIndex(LookupOptions(settings.recipient_delimiter, settings.reject_disabled))
        try:
            await IndexSync(index, engine, max_staleness=settings.max_staleness).load(wanted)
        except Exception as exc:
            err.print(f"cannot read the database: {type(exc).__name__}: {exc}", highlight=False)
        finally:
            await engine.dispose()
        results = []
        for raw in addresses:
            try:
                results.append(index.lookup(raw))
            except Exception:
                results.append(LookupResult(raw, Verdict.TEMPFAIL, Reason.UNAVAILABLE))
        return results

    results = _run(work)
    if as_json:
        for result in results:
            sys.stdout.write(orjson.dumps(result.as_dict()).decode() + "\n")
    else:
        table = Table("address", "verdict", "reason", "primary", "kind", "tenant", "source")
        for r in results:
            color = {"accept": "green", "reject": "red"}.get(r.verdict.value, "yellow")
            table.add_row(
                r.address,
                f"[{color}]{r.verdict.value}[/{color}]",
                r.reason or "",
                r.primary or "",
                r.kind or "",
                r.tenant or "",
                r.source or "",
            )
        out.print(table)
    verdicts = {r.verdict.value for r in results}
    if "tempfail" in verdicts:
        raise typer.Exit(EXIT_TEMPFAIL)
    if "reject" in verdicts:
        raise typer.Exit(1)


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply Alembic migrations (SQLite or PostgreSQL)."""
    from app.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.database_url, revision)
    out.print(f"database upgraded to {revision}")


@apikey_cli.command("create")
def apikey_create(
    name: str,
    scope: Annotated[
        list[str], typer.Option("--scope", help="lookup, read, write or admin; repeatable")
    ],
    tenant: Annotated[
        list[str] | None,
        typer.Option("--tenant", help="restrict the key to this tenant; repeatable (none: global)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a key; it is printed once, alone on the last line, and stored hashed."""
    from app.apikeys import create_key, describe_keys

    async def work(settings: Settings) -> tuple[dict[str, Any], str]:
        async def inner(session: AsyncSession) -> tuple[dict[str, Any], str]:
            row, key = await create_key(session, name, scope, tenant)
            shown = (await describe_keys(session, [row]))[0]
            return {k: shown[k] for k in ("id", "name", "scopes", "tenants")}, key

        return await _with_session(settings, inner)

    info, key = _run(work)
    if as_json:
        sys.stdout.write(orjson.dumps(info | {"key": key}).decode() + "\n")
    else:
        where = f" tenants={','.join(info['tenants'])}" if info["tenants"] else ""
        out.print(
            f"created API key {info['name']} ({info['id']}) "
            f"scopes={','.join(info['scopes'])}{where}"
        )
        out.print("store it now; it cannot be shown again:")
        sys.stdout.flush()
        sys.stdout.write(key + "\n")


@apikey_cli.command("list")
def apikey_list() -> None:
    """List keys (never the keys themselves)."""
    from app.apikeys import describe_keys, list_keys

    async def work(settings: Settings) -> list[dict[str, Any]]:
        async def inner(session: AsyncSession) -> list[dict[str, Any]]:
            return await describe_keys(session, await list_keys(session))

        return await _with_session(settings, inner)

    table = Table("id", "name", "prefix", "scopes", "tenants", "created", "revoked")
    for k in _run(work):
        table.add_row(
            k["id"],
            k["name"],
            k["prefix"] + "…",
            ",".join(k["scopes"]),
            ",".join(k["tenants"]) if k["tenants"] is not None else "(all)",
            k["created_at"].isoformat(timespec="seconds"),
            k["revoked_at"].isoformat(timespec="seconds") if k["revoked_at"] else "",
        )
    out.print(table)


@apikey_cli.command("revoke")
def apikey_revoke(key: Annotated[str, typer.Argument(help="key id or name")]) -> None:
    """Revoke a key; every process stops accepting it within a second."""
    from app.apikeys import revoke_key

    async def work(settings: Settings) -> str:
        async def inner(session: AsyncSession) -> str:
            return (await revoke_key(session, key)).id

        return await _with_session(settings, inner)

    out.print(f"revoked {_run(work)}")


@domains_cli.command("add")
def domains_add(
    name: str, tenant: Annotated[str, typer.Option(help="an existing tenant's name")] = "default"
) -> None:
    """Accept mail for a domain (routes its addresses to the tenant; one tenant per domain)."""
    from app.directory.tenant_admin import get_or_default
    from app.directory.tenants import add_domain

    async def work(settings: Settings) -> str:
        async def inner(session: AsyncSession) -> str:
            return (await add_domain(session, await get_or_default(session, tenant), name)).name

        return await _with_session(settings, inner)

    out.print(f"accepted domain {_run(work)} for tenant {tenant}")


@domains_cli.command("list")
def domains_list() -> None:
    from app.directory.tenants import list_domains

    async def work(settings: Settings) -> list[tuple[str, str, str]]:
        async def inner(session: AsyncSession) -> list[tuple[str, str, str]]:
            return [(d.name, t, d.source) for d, t in await list_domains(session)]

        return await _with_session(settings, inner)

    table = Table("domain", "tenant", "source")
    for row in _run(work):
        table.add_row(*row)
    out.print(table)


@domains_cli.command("remove")
def domains_remove(name: str) -> None:
    from app.directory.tenants import remove_domain

    async def work(settings: Settings) -> None:
        await _with_session(settings, lambda session: remove_domain(session, name))

    _run(work)
    out.print(f"removed domain {name}")


@users_cli.command("add")
def users_add(
    email: str,
    alias: Annotated[list[str] | None, typer.Option("--alias", help="repeatable")] = None,
    name: Annotated[str | None, typer.Option("--name", help="display name")] = None,
    disabled: Annotated[bool, typer.Option("--disabled")] = False,
) -> None:
    """Add a manual user with aliases (its domain must be accepted)."""
    from app.directory.recipients import save_manual
    from app.directory.records import RecipientKind

    async def work(settings: Settings) -> str:
        async def inner(session: AsyncSession) -> str:
            recipient = await save_manual(
                session,
                recipient=None,
                email=email,
                aliases=alias or [],
                display_name=name,
                enabled=not disabled,
                kind=RecipientKind.USER,
                attributes={},
            )
            return recipient.id

        return await _with_session(settings, inner)

    out.print(f"added {email} ({_run(work)})")


@cli.command()
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Connectors of every tenant: state, last success, lag, last error, counts."""
    from app.connectors.status import list_status

    async def work(settings: Settings) -> list[dict[str, Any]]:
        return await _with_session(settings, list_status)

    items = _run(work)
    if as_json:
        sys.stdout.write(orjson.dumps(items).decode() + "\n")
        return
    if not items:
        out.print("no connectors yet: add a domain and users, or configure a directory source")
        return
    table = Table(
        "tenant",
        "connector",
        "kind",
        "state",
        "last success",
        "objects",
        "addresses",
        "held deletions",
        "last error",
        "warnings",
    )
    for i in items:
        last = (
            i["last_success_at"].isoformat(timespec="seconds") if i["last_success_at"] else "never"
        )
        table.add_row(
            i["tenant"],
            i["name"],
            i["kind"],
            f"{i['state']} (paused)" if i["paused"] else i["state"],
            last,
            str(i["objects"]),
            str(i["addresses"]),
            str(i["held_deletions"]),
            i["last_error"] or "",
            "; ".join(i["warnings"]),
        )
    out.print(table)


@cli.command()
def sync(
    connector: Annotated[
        str | None, typer.Option("--connector", help="name or id; default: every directory")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="full round (and sweep)")] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="skip a directory another process is syncing and exit 75"),
    ] = False,
) -> None:
    """Run a sync round now, straight on the database.

    A directory another process is syncing is waited for; with --no-wait it is skipped (exit 75).

    Exit 1 on a failed round. SIGTERM or Ctrl-C stops at a page boundary (exit 128 + signal).
    """
    from app.sync_command import run_sync_command

    run_sync_command(connector, full=full, no_wait=no_wait, out=out, err=err)


@cli.command("approve-deletions")
def approve_deletions_command(
    connector: Annotated[str, typer.Argument(help="connector name or id")],
) -> None:
    """Apply the deletions the mass-deletion guard is holding for a connector."""
    from app.connectors.runner import approve_deletions
    from app.connectors.status import find
    from app.db.engine import create_engine, create_sessionmaker
    from app.errors import NotFound

    async def work(settings: Settings) -> int:
        engine = create_engine(settings.database_url)
        sessionmaker = create_sessionmaker(engine)
        try:
            async with sessionmaker() as session:
                row = await find(session, connector)
            if row is None:
                raise NotFound(f"no connector {connector!r}")
            return await approve_deletions(sessionmaker, row.id)
        finally:
            await engine.dispose()

    out.print(f"applied {_run(work)} held deletions")


@connectors_cli.command("pause")
def connectors_pause(
    connector: Annotated[str, typer.Argument(help="id, TENANT/NAME, or name")],
) -> None:
    """Stop running rounds of a connector (lookups answer until it is stale, then defer)."""
    from app.connectors_command import set_paused

    out.print(_run(lambda settings: set_paused(settings, connector, paused=True)))


@connectors_cli.command("resume")
def connectors_resume(
    connector: Annotated[str, typer.Argument(help="id, TENANT/NAME, or name")],
) -> None:
    """Run a paused connector's rounds again."""
    from app.connectors_command import set_paused

    out.print(_run(lambda settings: set_paused(settings, connector, paused=False)))


@cli.command()
def simulator(
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTPS port")] = 8443,
    seed: Annotated[int, typer.Option(help="same seed, same tenant")] = 0,
    users: Annotated[int, typer.Option()] = 200,
    groups: Annotated[int, typer.Option()] = 30,
    contacts: Annotated[int, typer.Option()] = 20,
    memberships: Annotated[int | None, typer.Option(help="default: 4 per user")] = None,
    page_size: Annotated[int, typer.Option(help="objects per delta page")] = 100,
    rate_429: Annotated[float, typer.Option(help="share of requests answered 429")] = 0.0,
    rate_503: Annotated[float, typer.Option(help="share of requests answered 503")] = 0.0,
    cert_dir: Annotated[str, typer.Option(help="where the TLS CA and key live")] = (
        ".roster-simulator"
    ),
) -> None:
    """Serve a simulated Microsoft 365 tenant (Graph and token endpoints) over HTTPS."""
    import contextlib
    from pathlib import Path

    from app.logging import configure_logging
    from app.simulator.graph import run

    def announce(info: dict[str, Any]) -> None:
        out.print(
            f"Graph simulator: tenant {info['tenant']} with {info['users']} users, "
            f"{info['groups']} groups, {info['contacts']} contacts, "
            f"{info['memberships']} memberships; control API {info['control_url']}/state",
            highlight=False,
        )
        out.print("Point Roster at it with:", highlight=False)
        for name in ("tenant_id", "client_id", "client_secret", "base_url", "authority_host"):
            sys.stdout.write(f"ROSTER_GRAPH__{name.upper()}={info[name]}\n")
        sys.stdout.write(f"ROSTER_GRAPH__CA_BUNDLE={info['ca_bundle']}\n")
        sys.stdout.flush()

    configure_logging("WARNING")
    with contextlib.suppress(KeyboardInterrupt):
        run(
            host, port, seed, users, groups, contacts, memberships,
            cert_dir=Path(cert_dir), page_size=page_size, rate_429=rate_429,
            rate_503=rate_503, announce=announce,
        )  # fmt: skip


@cli.command()
def demo(
    host: Annotated[str, typer.Option(help="HTTP listen address")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="ROSTER_DEMO_PORT", help="HTTP port; 0 picks a free one")
    ] = 8000,
    database: Annotated[str, typer.Option(help="SQLite file, recreated")] = "roster-demo.db",
    seed: Annotated[int, typer.Option(help="same seed, same tenant")] = 42,
    users: Annotated[int, typer.Option()] = 200,
) -> None:
    """Serve Roster against the built-in simulated tenant (SQLite), with example lookups."""
    from pathlib import Path

    from app.demo import DemoOptions, run_demo, stop_quietly
    from app.logging import configure_logging

    configure_logging("WARNING")

    def echo(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    options = DemoOptions(host=host, port=port, database=Path(database), seed=seed, users=users)
    with stop_quietly():
        try:
            run_demo(options, echo)
        except RosterError as exc:
            _fail(exc.message)


@cli.command("import")
def import_command(
    file: Annotated[
        Path | None, typer.Argument(help="the .xlsx or .csv file", dir_okay=False)
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the diff, change nothing")] = (
        False
    ),
    mode: Annotated[
        str, typer.Option("--mode", help="merge (additive) or replace (missing rows removed)")
    ] = "merge",
    partial: Annotated[
        bool,
        typer.Option(
            "--partial/--atomic", help="apply the good rows despite bad ones (default: atomic)"
        ),
    ] = False,
    add_domains: Annotated[
        bool, typer.Option("--add-domains", help="accept the file's domains not yet accepted")
    ] = False,
    sheet: Annotated[str | None, typer.Option("--sheet", help="XLSX sheet name")] = None,
    connector: Annotated[str, typer.Option("--connector", help="spreadsheet connector")] = (
        "spreadsheet"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    template: Annotated[
        Path | None, typer.Option("--template", help="write an example .xlsx or .csv and exit")
    ] = None,
) -> None:
    """Import recipients from a spreadsheet, straight on the database.

    Exit 1 when the file is refused, or has bad rows and --partial is not given.
    """
    from app.import_command import run_import_command

    run_import_command(
        file,
        dry_run=dry_run,
        mode=mode,
        partial=partial,
        add_domains=add_domains,
        sheet=sheet,
        connector=connector,
        as_json=as_json,
        template=template,
        out=out,
        err=err,
    )


@graph_cli.command("subscriptions")
def graph_subscriptions(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the Graph subscriptions Roster keeps (from the database; secrets never shown)."""
    from app.connectors.graph.realtime import list_recorded

    async def work(settings: Settings) -> list[dict[str, Any]]:
        return await _with_session(settings, list_recorded)

    items = _run(work)
    if as_json:
        sys.stdout.write(orjson.dumps(items).decode() + "\n")
        return
    if not items:
        out.print("no Graph subscriptions (set ROSTER_PUBLIC_URL and run roster serve)")
        return
    table = Table("id", "resource", "expires", "renewed", "last lifecycle event")
    for i in items:
        table.add_row(
            i["id"], i["resource"], i["expires_at"], i["renewed_at"] or "never",
            i["last_lifecycle_event"] or "",
        )  # fmt: skip
    out.print(table)


@graph_cli.command("unsubscribe")
def graph_unsubscribe(
    ids: Annotated[list[str] | None, typer.Argument(help="subscription ids (default: all)")] = None,
) -> None:
    """Delete Roster's Graph subscriptions at Graph and in the database.

    A running `roster serve` with ROSTER_PUBLIC_URL set creates new ones: stop it, or unset
    ROSTER_PUBLIC_URL, first.
    """
    from app.connectors.graph.realtime import unsubscribe
    from app.connectors.graph.subscription_client import subscription_client_factory
    from app.db.engine import create_engine, create_sessionmaker

    async def work(settings: Settings) -> list[str]:
        if settings.graph is None:
            _fail("ROSTER_GRAPH__TENANT_ID and ROSTER_GRAPH__CLIENT_ID are needed to reach Graph")
            raise AssertionError  # unreachable
        engine = create_engine(settings.database_url)
        try:
            return await unsubscribe(
                create_sessionmaker(engine), subscription_client_factory(settings.graph), ids
            )
        finally:
            await engine.dispose()

    removed = _run(work)
    out.print(f"removed {len(removed)} subscription(s)")
    for sub_id in removed:
        out.print(f"  {sub_id}", highlight=False)


secrets_cli = typer.Typer(help="Secrets at rest (ROSTER_SECRET_KEY).", no_args_is_help=True)
cli.add_typer(secrets_cli, name="secrets")


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first (newest) key of ROSTER_SECRET_KEY.

    Put the new key first (`NEW,OLD`) everywhere, run this, then drop the old key. If the keys
    cannot open a stored secret, the row is named, nothing changes, and the exit code is 1.
    """
    from app.connectors.stored_secrets import Rotated, rotate_all
    from app.db.engine import create_engine, create_sessionmaker

    async def work(settings: Settings) -> list[Rotated]:
        engine = create_engine(settings.database_url)
        try:
            return await rotate_all(create_sessionmaker(engine), settings.secret_key)
        finally:
            await engine.dispose()

    for rotated in _run(work):
        out.print(f"rotated {rotated.count} {rotated.table.label}", highlight=False)

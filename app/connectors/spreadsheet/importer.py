"""Import a read spreadsheet into one spreadsheet connector of a tenant: diff, apply, report.

The caller owns the transaction (the API route commits, the CLI uses `sessionmaker.begin()`), so
an atomic import is one transaction: it applies every good row or none. Reading the file is
blocking and happens before, in `read_upload` (a worker thread). An import that is not a dry
run is a `manual` round in the connector's run history, recorded in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connectors import guard, runs
from app.connectors.spreadsheet.columns import Field, map_columns
from app.connectors.spreadsheet.group_targets import FOREIGN_PREFIX, is_foreign
from app.connectors.spreadsheet.mirror_state import load_state
from app.connectors.spreadsheet.models import SpreadsheetImport
from app.connectors.spreadsheet.plan import Columns, Plan, build_plan
from app.connectors.spreadsheet.reader import Source, read_spreadsheet
from app.connectors.spreadsheet.report import ImportMode, ImportOptions, ImportReport, ImportStatus
from app.connectors.spreadsheet.results import SheetReadResult
from app.directory import service
from app.directory.addresses import domain_of
from app.directory.memberships import replace_connector_edges
from app.directory.models import (
    Connector,
    Domain,
    Tenant,
    new_id,
)
from app.directory.records import ChangeSet, SourceKind
from app.directory.tenants import add_domain, ensure_connector, ensure_tenant
from app.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

_CHUNK = 1_000
_MAX_ERRORS = 10_000  # listed in a report; error_count has them all


async def read_upload(
    source: Source,
    *,
    filename: str,
    options: ImportOptions,
    progress: Callable[[int], None] | None = None,
) -> SheetReadResult:
    """Read and check the file in a worker thread (openpyxl and csv are blocking)."""
    return await asyncio.to_thread(
        read_spreadsheet,
        source,
        filename=filename,
        sheet=options.sheet,
        max_bytes=options.max_bytes,
        progress=progress,
    )


async def run_import(
    session: AsyncSession,
    sheet: SheetReadResult,
    *,
    filename: str,
    options: ImportOptions,
    now: datetime | None = None,
) -> ImportReport:
    """Diff the rows against the mirror; apply them unless this is a dry run or a rejected
    atomic import; store the report. Only flushes: the caller commits."""
    now = now or datetime.now(UTC)
    columns = _columns(sheet.headers)
    tenant = await _tenant(
        session, sheet, add_domains=options.add_domains, tenant_ids=options.tenant_ids
    )
    connector = await ensure_connector(session, tenant, SourceKind.SPREADSHEET, options.connector)
    if connector.kind != SourceKind.SPREADSHEET.value:
        raise InvalidInput(
            f"connector {options.connector!r} of tenant {tenant.name} is a {connector.kind} "
            "connector; name a spreadsheet connector"
        )
    state = await load_state(session, tenant.id, connector.id, sheet)
    plan = build_plan(
        sheet.rows,
        columns=columns,
        mode=options.mode,
        state=state,
        refused_addresses=sheet.refused_addresses,
        add_domains=options.add_domains,
        guard=await guard.for_tenant(session, tenant.id, options.guard),
    )
    report = _report(sheet, plan, filename=filename, options=options, now=now)
    report.tenant, report.connector = tenant.name, connector.name
    if report.status in (ImportStatus.APPLIED, ImportStatus.HELD):
        held = await _apply(session, tenant, connector, plan, options, now)
        if held and report.status is not ImportStatus.HELD:  # a concurrent change tipped it
            report.status, report.removes = ImportStatus.HELD, 0
            report.held_deletions = await guard.pending_count(session, connector.id)
    report.message = _message(report, options)
    if not options.dry_run:
        await _record_run(session, connector.id, report, options, now)
    session.add(
        SpreadsheetImport(
            id=report.id,
            tenant_id=tenant.id,
            connector_id=connector.id,
            filename=filename[:255],
            mode=options.mode.value,
            dry_run=options.dry_run,
            partial=options.partial,
            status=report.status.value,
            report=report.as_dict(),
            created_at=now,
        )
    )
    await session.flush()
    logger.info(
        "spreadsheet import: id=%s tenant=%s connector=%s mode=%s status=%s adds=%d updates=%d "
        "removes=%d unchanged=%d held=%d errors=%d",
        report.id,
        tenant.name,
        connector.name,
        options.mode.value,
        report.status.value,
        report.adds,
        report.updates,
        report.removes,
        report.unchanged,
        report.held_deletions,
        report.error_count,
    )
    return report


async def get_report(
    session: AsyncSession, import_id: str, tenant_ids: frozenset[str] | None = None
) -> dict[str, Any]:
    """The stored report; another tenant's is absent to a caller restricted to `tenant_ids`."""
    row = await session.get(SpreadsheetImport, import_id)
    if row is None or (tenant_ids is not None and row.tenant_id not in tenant_ids):
        raise NotFound(f"no import {import_id}")
    return dict(row.report)


def _columns(headers: Sequence[str]) -> Columns:
    mapped = map_columns(list(headers), max_columns=len(headers) + 1)

    def header(field: Field) -> str:
        position = mapped.fields.get(field)
        return mapped.header_of(position) if position is not None else field.value

    return Columns(
        email=header(Field.EMAIL),
        aliases=header(Field.ALIASES),
        groups=header(Field.GROUPS),
        kind=header(Field.KIND),
    )


def _file_domains(sheet: SheetReadResult) -> set[str]:
    domains = {domain_of(a) for r in sheet.rows for a in (r.email, *r.aliases, *r.groups)}
    return domains or {domain_of(a) for a in sheet.refused_addresses if "@" in a}


async def _tenant(
    session: AsyncSession,
    sheet: SheetReadResult,
    *,
    add_domains: bool,
    tenant_ids: frozenset[str] | None = None,
) -> Tenant:
    """The one tenant the file's domains route to; a file spanning tenants is refused. For a
    tenant key (`tenant_ids`), that tenant must be one of its own; other tenants' domains are
    named as not accepted, their owners never (docs/contracts.md §6)."""
    domains = sorted(_file_domains(sheet))
    owners: dict[str, str] = {}
    for chunk in _chunks(domains):
        rows = await session.execute(
            select(Domain.name, Domain.tenant_id).where(Domain.name.in_(chunk))
        )
        owners.update(dict(rows.all()))
    if tenant_ids is not None:
        hidden = sorted(d for d, owner in owners.items() if owner not in tenant_ids)
        if hidden:
            raise InvalidInput(
                f"the file names domains this key's tenants do not accept: {_listed(hidden)}. "
                "An import feeds one of the key's tenants: remove those rows."
            )
    owner_ids = sorted(set(owners.values()))
    if len(owner_ids) > 1:
        names = dict((await session.execute(select(Tenant.id, Tenant.name))).all())
        parts = sorted(
            f"{names.get(t, t)} ({', '.join(d for d, o in sorted(owners.items()) if o == t)})"
            for t in owner_ids
        )
        raise InvalidInput(
            "the file's domains belong to several tenants: "
            + "; ".join(parts)
            + ". An import feeds one tenant: split the file by tenant."
        )
    if owner_ids:
        tenant = await session.get(Tenant, owner_ids[0])
        if tenant is not None:
            return tenant
    if add_domains or not domains:
        return await _tenant_for_new_domains(session, tenant_ids)
    raise InvalidInput(
        f"none of the file's domains is an accepted domain ({_listed(domains)}). Add them first "
        "(roster domains add NAME, or POST /v1/domains) or import with --add-domains "
        "(add_domains=true)."
    )


async def _tenant_for_new_domains(
    session: AsyncSession, tenant_ids: frozenset[str] | None
) -> Tenant:
    """A global key's new domains go to the default tenant; a tenant key's to its one tenant."""
    if tenant_ids is None:
        return await ensure_tenant(session)
    if len(tenant_ids) == 1:
        tenant = await session.get(Tenant, next(iter(tenant_ids)))
        if tenant is not None:
            return tenant
    raise InvalidInput(
        "none of the file's domains is accepted yet, and this key serves several tenants: add "
        "the domains to one of them first (POST /v1/domains with its tenant), then import."
    )


def _report(
    sheet: SheetReadResult, plan: Plan, *, filename: str, options: ImportOptions, now: datetime
) -> ImportReport:
    errors = sorted([*sheet.errors, *plan.errors], key=lambda e: e.row)
    error_count = sheet.error_count + len(plan.errors)
    if options.dry_run:
        status = ImportStatus.DRY_RUN
    elif error_count and not options.partial:
        status = ImportStatus.REJECTED
    else:
        status = ImportStatus.HELD if plan.held else ImportStatus.APPLIED
    report = ImportReport(
        id=new_id(),
        mode=options.mode,
        dry_run=options.dry_run,
        partial=options.partial,
        status=status,
        filename=filename,
        format=sheet.format,
        sheet=sheet.sheet,
        rows=sheet.data_rows,
        errors=errors[:_MAX_ERRORS],
        error_count=error_count,
        created_at=now.isoformat(),
    )
    if status is ImportStatus.REJECTED:
        return report  # nothing changed: the counts say so
    report.diff = plan.diff
    report.adds = len(plan.diff.adds)
    report.updates = len(plan.diff.updates)
    report.removes = len(plan.diff.removes)
    report.unchanged = len(plan.diff.unchanged)
    report.held_deletions = plan.held
    report.domains_added = plan.domains_to_add
    report.groups_created = plan.groups_created
    return report


async def _apply(
    session: AsyncSession,
    tenant: Tenant,
    connector: Connector,
    plan: Plan,
    options: ImportOptions,
    now: datetime,
) -> bool:
    """Write the plan; returns True when the deletion guard holds the removals."""
    for name in plan.domains_to_add:
        await add_domain(session, tenant, name, source=SourceKind.SPREADSHEET.value)
    ref = service.ConnectorRef.of(connector)
    pending = await guard.pending_count(session, connector.id)
    if pending:
        await guard.release_seen(session, connector.id, plan.wanted)
    own_sets = {k: v for k, v in plan.member_sets.items() if not is_foreign(k)}
    foreign_sets = {
        k.removeprefix(FOREIGN_PREFIX): v for k, v in plan.member_sets.items() if is_foreign(k)
    }
    held = False
    if options.mode is ImportMode.REPLACE and plan.removes:
        # Removals first: an address may move from a removed object to a new row.
        await guard.hold(session, connector.id, plan.removes, reason="removed", now=now)
        held = await guard.settle(session, ref, options.guard, now=now)
    result = await service.apply(
        session,
        ChangeSet(upserts=plan.upserts, member_sets=own_sets),
        connector=ref,
        now=now,
    )
    if foreign_sets:
        await replace_connector_edges(session, foreign_sets, connector=ref, now=now)
    if result.conflicts:
        logger.warning(
            "spreadsheet import lost address claims: connector=%s conflicts=%d",
            connector.id,
            result.conflicts,
        )
    still_held = await guard.pending_count(session, connector.id) > 0
    connector.state = "needs_approval" if still_held else "ready"
    connector.last_success_at = now
    connector.last_error = None
    connector.progress = {"running": False, "finished_at": now.isoformat()}
    connector.updated_at = now
    await session.flush()
    return held


async def _record_run(
    session: AsyncSession,
    connector_id: str,
    report: ImportReport,
    options: ImportOptions,
    now: datetime,
) -> None:
    held = await guard.pending_count(session, connector_id) if report.applied else 0
    if report.status is ImportStatus.REJECTED:
        outcome, error = runs.Outcome.ERROR, f"rejected: {report.error_count} errors in the file"
    else:
        outcome = runs.Outcome.HELD if held else runs.Outcome.SUCCESS
        error = None
    counts = runs.Counts(
        pages=1 if report.applied else 0,
        objects=report.adds + report.updates + report.unchanged if report.applied else 0,
        added=report.adds if report.applied else 0,
        updated=report.updates if report.applied else 0,
        deleted=0 if report.status is ImportStatus.HELD else report.removes,
        held=held,
    )
    await runs.record(
        session,
        connector_id,
        full=options.mode is ImportMode.REPLACE,
        trigger=runs.Trigger.MANUAL,
        outcome=outcome,
        counts=counts,
        started_at=now,
        now=now,  # one transaction: it starts and ends with the import
        error=error,
    )


def _message(report: ImportReport, options: ImportOptions) -> str:
    counts = (
        f"{report.adds} to add, {report.updates} to update, {report.removes} to remove, "
        f"{report.unchanged} unchanged"
    )
    if report.status is ImportStatus.REJECTED:
        good = report.rows - len({e.row for e in report.errors})
        return (
            f"nothing imported: {report.error_count} errors in the file. Fix the rows listed "
            f"and import again, or import with --partial (partial=true) to apply the {good} "
            "good rows."
        )
    done = (
        f"added {report.adds}, updated {report.updates}, removed {report.removes}, "
        f"{report.unchanged} unchanged"
    )
    parts = [f"dry run, nothing changed: {counts}" if report.dry_run else f"imported: {done}"]
    if report.error_count:
        parts.append(
            f"{report.error_count} errors: those rows are "
            + ("skipped" if options.partial else "refused, and without --partial nothing applies")
        )
    if report.held_deletions:
        parts.append(
            f"{report.held_deletions} removals are held by the mass-deletion guard; those "
            "addresses stay accepted until an operator approves "
            f"(roster approve-deletions {report.connector})"
        )
    if report.domains_added:
        parts.append("domains added: " + ", ".join(report.domains_added))
    if report.groups_created:
        verb = "groups to create" if report.dry_run else "groups created"
        parts.append(f"{verb}: " + _listed(report.groups_created, sep="; "))
    return "; ".join(parts)


def _listed(names: Sequence[str], *, sep: str = ", ", limit: int = 10) -> str:
    """The first `limit` names, then "and N more": what an error or summary shows of a list."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return sep.join(names[:limit]) + more


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

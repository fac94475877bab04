"""The body of `roster import`, kept out of `app/cli.py` so that stays a thin parser.

It prints with rich and exits through typer, so it sits beside cli.py rather than in the
spreadsheet connector: the import contracts in pyproject.toml keep the CLI's libraries out
of the connectors.

Works straight on the database named by ROSTER_DATABASE_URL (docs/contracts.md §11). `--json`
prints exactly the contract's keys; file-level refusals print the same shape with one error
whose row is null.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.connectors.guard import GuardSettings
from app.connectors.spreadsheet.importer import read_upload, run_import
from app.connectors.spreadsheet.report import ImportMode, ImportOptions, ImportReport
from app.connectors.spreadsheet.template import write_template
from app.errors import InvalidInput, RosterError
from app.settings import Settings

EXIT_TEMPFAIL = 75
_SHOWN_ERRORS = 50


def run_import_command(
    file: Path | None,
    *,
    dry_run: bool,
    mode: str,
    partial: bool,
    add_domains: bool,
    sheet: str | None,
    connector: str,
    as_json: bool,
    template: Path | None,
    out: Console,
    err: Console,
) -> None:
    if template is not None:
        try:
            written = write_template(template)
        except ValueError as exc:
            _fail(err, str(exc))
        out.print(f"wrote the import template {written}", highlight=False)
        return
    if file is None:
        _fail(err, "name the file to import (or --template FILE.xlsx to get an example)")
    try:
        import_mode = ImportMode(mode.casefold())
    except ValueError:
        _fail(err, f"--mode must be replace or merge, not {mode!r}")
    if not file.is_file():
        _fail(err, f"{file}: no such file")
    settings = Settings()
    options = ImportOptions(
        mode=import_mode,
        dry_run=dry_run,
        partial=partial,
        add_domains=add_domains,
        sheet=sheet,
        connector=connector,
        guard=GuardSettings(settings.delete_threshold, settings.delete_threshold_percent),
        max_bytes=settings.max_import_bytes,
    )
    try:
        report = asyncio.run(_import(settings, file, options, err))
    except InvalidInput as exc:  # the file is refused as a whole
        if as_json:
            _print_json(
                {
                    "mode": import_mode.value,
                    "dry_run": dry_run,
                    "adds": 0,
                    "updates": 0,
                    "removes": 0,
                    "unchanged": 0,
                    "errors": [{"row": None, "column": None, "reason": exc.message}],
                    "groups_created": [],
                }
            )
        _fail(err, exc.message)
    except RosterError as exc:
        _fail(err, exc.message, EXIT_TEMPFAIL if exc.status_code == 503 else 1)
    if as_json:
        _print_json(report.summary())
    else:
        _print_report(out, report)
    if report.error_count and not partial:
        raise typer.Exit(1)


async def _import(
    settings: Settings, file: Path, options: ImportOptions, err: Console
) -> ImportReport:
    from app.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as progress:
            task = progress.add_task(f"reading {file.name}", total=None)

            def on_rows(rows: int) -> None:
                progress.update(task, description=f"reading {file.name}: {rows:,} rows")

            sheet = await read_upload(file, filename=file.name, options=options, progress=on_rows)
            progress.update(
                task,
                description=f"{'diffing' if options.dry_run else 'importing'} "
                f"{sheet.data_rows:,} rows",
            )
            async with create_sessionmaker(engine).begin() as session:
                return await run_import(session, sheet, filename=file.name, options=options)
    finally:
        await engine.dispose()


def _print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data).decode() + "\n")


def _print_report(out: Console, report: ImportReport) -> None:
    title = f"{report.filename}: {report.status.value} ({report.mode.value}"
    title += f", tenant {report.tenant}, connector {report.connector})"
    table = Table("adds", "updates", "removes", "unchanged", "held", "errors", title=title)
    table.add_row(
        str(report.adds),
        str(report.updates),
        str(report.removes),
        str(report.unchanged),
        str(report.held_deletions),
        str(report.error_count),
    )
    out.print(table)
    if report.errors:
        errors = Table("row", "column", "reason", title="rows with errors")
        for error in report.errors[:_SHOWN_ERRORS]:
            errors.add_row(str(error.row), error.column or "", error.reason)
        out.print(errors)
        if report.error_count > _SHOWN_ERRORS:
            out.print(f"... and {report.error_count - _SHOWN_ERRORS} more (use --json for all)")
    if report.dry_run:
        for name, rows in (
            ("adds", report.diff.adds),
            ("updates", report.diff.updates),
            ("removes", report.diff.removes),
        ):
            if rows:
                shown = ", ".join(
                    r.label + (f" ({', '.join(r.fields)})" if r.fields else "") for r in rows[:20]
                )
                more = f" and {len(rows) - 20} more" if len(rows) > 20 else ""
                out.print(f"{name}: {shown}{more}", highlight=False)
    out.print(report.message, highlight=False)


def _fail(err: Console, message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)

"""Spreadsheet imports: upload a CSV or XLSX, get the diff (dry run) or the applied report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Query, UploadFile
from pydantic import BaseModel, Field

from app.api.deps import IndexSyncDep, ReadKey, SessionDep, SettingsDep, WriteKey
from app.api.errors import responses
from app.api.responses import error_response
from app.api.schemas import ErrorBody
from app.connectors.guard import GuardSettings
from app.connectors.spreadsheet.importer import get_report, read_upload, run_import
from app.connectors.spreadsheet.report import (
    DEFAULT_CONNECTOR,
    ImportMode,
    ImportOptions,
    ImportStatus,
)
from app.errors import PayloadTooLarge

router = APIRouter(prefix="/v1/imports", tags=["imports"])


class ImportRowError(BaseModel):
    row: int | None = Field(description="as a spreadsheet shows it: the header is row 1")
    column: str | None
    reason: str


class ImportDiffRow(BaseModel):
    row: int | None = Field(description="None for objects not in the file (removals, new groups)")
    email: str | None = Field(description="None for a group without an address (see name)")
    kind: str
    fields: list[str] | None = Field(default=None, description="what an update changes")
    name: str | None = Field(default=None, description="the name of a group without an address")


class ImportDiff(BaseModel):
    adds: list[ImportDiffRow]
    updates: list[ImportDiffRow]
    removes: list[ImportDiffRow]
    unchanged: list[ImportDiffRow]
    truncated: bool = Field(description="more than 1,000 rows in a list; the counts are exact")


class ImportReport(BaseModel):
    id: str | None
    status: str = Field(description="applied, dry_run, rejected or held")
    applied: bool
    mode: ImportMode
    dry_run: bool
    adds: int
    updates: int
    removes: int
    unchanged: int
    errors: list[ImportRowError]
    partial: bool
    error_count: int
    held_deletions: int = Field(
        description="removals held by the mass-deletion guard; those addresses stay accepted"
    )
    domains_added: list[str]
    groups_created: list[str] = Field(
        default_factory=list,  # reports stored before this field have none
        description="groups named in the groups column that the import creates (a dry run: "
        "would create), as the file names them",
    )
    tenant: str | None
    connector: str | None
    filename: str
    format: str | None
    sheet: str | None
    rows: int
    message: str
    created_at: str | None
    diff: ImportDiff


class ImportRejected(ImportReport):
    """Bad rows and no `partial`: nothing was applied; the report lists every bad row."""

    error: str = Field(examples=["ImportRejected"])
    detail: str


@router.post(
    "",
    responses={
        422: {
            "model": ImportRejected | ErrorBody,
            "description": "bad rows (ImportRejected, nothing applied) or a refused file",
        },
        **responses(401, 403, 413, 503),
    },
)
async def create_import(
    key: WriteKey,
    session: SessionDep,
    sync: IndexSyncDep,
    settings: SettingsDep,
    file: UploadFile = File(description="the spreadsheet: .xlsx or .csv"),
    dry_run: bool = Query(default=False, description="return the diff; change nothing"),
    mode: ImportMode = Query(
        default=ImportMode.MERGE,
        description="replace: rows missing from the file are removed; merge: additive",
    ),
    partial: bool = Query(default=False, description="apply the good rows despite bad ones"),
    add_domains: bool = Query(default=False, description="accept the file's new domains"),
    sheet: str | None = Query(default=None, description="XLSX sheet; default the first"),
    connector: str = Query(default=DEFAULT_CONNECTOR, max_length=100),
) -> Any:
    """Import recipients from a spreadsheet into one spreadsheet connector of a tenant."""
    limit = settings.max_import_bytes
    if file.size is not None and file.size > limit:
        raise PayloadTooLarge(
            f"the file is {file.size / 2**20:,.1f} MiB; the limit is {limit / 2**20:,.0f} MiB. "
            "Split it into several files and import them in merge mode."
        )
    options = ImportOptions(
        mode=mode,
        dry_run=dry_run,
        partial=partial,
        add_domains=add_domains,
        sheet=sheet,
        connector=connector,
        guard=GuardSettings(settings.delete_threshold, settings.delete_threshold_percent),
        max_bytes=limit,
        tenant_ids=key.tenants,
    )
    filename = file.filename or "upload"
    read = await read_upload(file.file, filename=filename, options=options)
    report = await run_import(session, read, filename=filename, options=options)
    await session.commit()
    if report.applied:
        await sync.refresh_after_write()
    body = report.as_dict()
    if report.status is ImportStatus.REJECTED:
        return error_response(422, "ImportRejected", report.message, fields=body)
    return ImportReport.model_validate(body)


@router.get(
    "/{import_id}",
    responses=responses(401, 403, 404),
)
async def read_import(import_id: str, session: SessionDep, key: ReadKey) -> ImportReport:
    """The stored report of an import or dry run (a tenant key: its tenants' imports only)."""
    return ImportReport.model_validate(await get_report(session, import_id, key.tenants))

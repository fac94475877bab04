"""What an import was asked to do and what it did: options, the diff and the stored report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.connectors.guard import GuardSettings
from app.connectors.spreadsheet.results import RowError

DEFAULT_CONNECTOR = "spreadsheet"
DIFF_ROWS_LIMIT = 1_000  # rows listed per diff category; the counts are always exact


class ImportMode(StrEnum):
    REPLACE = "replace"  # the file is the connector's whole set: missing rows are removed
    MERGE = "merge"  # additive: rows not in the file are left alone


class ImportStatus(StrEnum):
    APPLIED = "applied"
    DRY_RUN = "dry_run"
    REJECTED = "rejected"  # bad rows without partial: nothing applied
    HELD = "held"  # applied, but the deletion guard holds the removals


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """Merge is the default: nothing disappears unless the operator asks for `replace`."""

    mode: ImportMode = ImportMode.MERGE
    dry_run: bool = False
    partial: bool = False
    add_domains: bool = False
    sheet: str | None = None
    connector: str = DEFAULT_CONNECTOR
    guard: GuardSettings = field(default_factory=GuardSettings)
    max_bytes: int | None = None
    # A tenant key's tenants: the file must route to one of them (None: a global key).
    tenant_ids: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One line of the diff; `row` is None for objects not in the file (removals, new groups).
    An address-less group has no email: `name` says which it is."""

    row: int | None
    email: str | None
    kind: str
    fields: tuple[str, ...] = ()  # what an update changes
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "email": self.email, "kind": self.kind}
        if self.fields:
            out["fields"] = list(self.fields)
        if self.name is not None:
            out["name"] = self.name
        return out

    @property
    def label(self) -> str:
        return self.email or f"group {self.name!r}"


@dataclass(slots=True)
class Diff:
    adds: list[DiffRow] = field(default_factory=list)
    updates: list[DiffRow] = field(default_factory=list)
    removes: list[DiffRow] = field(default_factory=list)
    unchanged: list[DiffRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        truncated = False
        for name in ("adds", "updates", "removes", "unchanged"):
            items: list[DiffRow] = getattr(self, name)
            truncated = truncated or len(items) > DIFF_ROWS_LIMIT
            out[name] = [item.as_dict() for item in items[:DIFF_ROWS_LIMIT]]
        out["truncated"] = truncated
        return out


@dataclass(slots=True)
class ImportReport:
    """The whole answer; `summary()` is the CLI's `--json` contract (docs/contracts.md §11)."""

    mode: ImportMode
    dry_run: bool
    partial: bool
    status: ImportStatus
    filename: str
    format: str | None = None
    sheet: str | None = None
    tenant: str | None = None
    connector: str | None = None
    rows: int = 0  # data rows read, good and bad
    adds: int = 0
    updates: int = 0
    removes: int = 0
    unchanged: int = 0
    held_deletions: int = 0  # removals the deletion guard holds; still accepted by lookups
    domains_added: list[str] = field(default_factory=list)
    # Groups named in the groups column that the import creates (or, dry run, would create).
    groups_created: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    diff: Diff = field(default_factory=Diff)
    message: str = ""
    id: str | None = None
    created_at: str | None = None

    @property
    def applied(self) -> bool:
        return self.status in (ImportStatus.APPLIED, ImportStatus.HELD)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "dry_run": self.dry_run,
            "adds": self.adds,
            "updates": self.updates,
            "removes": self.removes,
            "unchanged": self.unchanged,
            "errors": [e.as_dict() for e in self.errors],
            "groups_created": self.groups_created,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "applied": self.applied,
            **self.summary(),
            "partial": self.partial,
            "error_count": self.error_count,
            "held_deletions": self.held_deletions,
            "domains_added": self.domains_added,
            "tenant": self.tenant,
            "connector": self.connector,
            "filename": self.filename,
            "format": self.format,
            "sheet": self.sheet,
            "rows": self.rows,
            "message": self.message,
            "created_at": self.created_at,
            "diff": self.diff.as_dict(),
        }

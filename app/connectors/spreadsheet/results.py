"""What the reader hands to the import service: good rows, bad rows, limits, the summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.connectors.base import RecipientKind, RecipientRecord


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Bounds that keep a hostile or mistaken file within fixed memory and time."""

    max_bytes: int = 64 * 1024 * 1024  # the file as uploaded
    max_rows: int = 500_000  # data rows, header excluded
    max_columns: int = 200
    max_cell_chars: int = 1_024  # email, display name, enabled, kind
    max_list_chars: int = 4_096  # aliases, groups, permissions
    max_attribute_chars: int = 4_096
    max_errors: int = 10_000  # row errors kept; more are only counted
    # XLSX (a zip): checked from the zip directory before anything is decompressed.
    max_zip_members: int = 1_000
    max_uncompressed_bytes: int = 512 * 1024 * 1024  # sum of all parts
    max_compression_ratio: int = 200  # per part bigger than 1 MiB; real sheets are ~10-30


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True, slots=True)
class RowError:
    """A bad row: `row` as a spreadsheet shows it (header = row 1), `column` as headed."""

    row: int
    column: str | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One good row; addresses are normalized (lower-case, IDNA domain) and de-duplicated."""

    row: int
    email: str
    display_name: str | None = None
    aliases: tuple[str, ...] = ()
    enabled: bool = True
    kind: RecipientKind = RecipientKind.USER
    groups: tuple[str, ...] = ()  # addresses of the groups this row is a member of
    group_names: tuple[str, ...] = ()  # groups named by display name, not address
    group_labels: tuple[tuple[str, str], ...] = ()  # (address, name) written `Name <address>`
    permissions: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)

    def to_record(self) -> RecipientRecord:
        """The directory record; the email is the external id, so re-imports match by address."""
        return RecipientRecord(
            external_id=self.email,
            kind=self.kind,
            addresses=(self.email, *self.aliases),
            primary=self.email,
            display_name=self.display_name,
            enabled=self.enabled,
            attributes=dict(self.attributes),
        )


@dataclass(slots=True)
class SheetReadResult:
    """Everything read from one file; `ok` is False when any row was refused."""

    format: str  # "csv" or "xlsx"
    sheet: str | None  # the XLSX sheet read
    headers: tuple[str, ...]
    attribute_columns: tuple[str, ...]
    rows: list[SheetRow]
    errors: list[RowError]
    error_count: int  # may exceed len(errors) when more than ReadLimits.max_errors
    data_rows: int  # non-blank rows after the header, good and bad
    refused_addresses: frozenset[str] = frozenset()  # addresses named on refused rows

    @property
    def ok(self) -> bool:
        return self.error_count == 0

"""Directory records and diff lines built from sheet rows and groups-column entries."""

from __future__ import annotations

from typing import Any

from app.connectors.base import RecipientKind, RecipientRecord
from app.connectors.spreadsheet.group_entries import NAMED_PREFIX
from app.connectors.spreadsheet.report import DiffRow
from app.connectors.spreadsheet.results import SheetRow

_GROUP = RecipientKind.GROUP


def attributes_of(row: SheetRow) -> dict[str, Any]:
    attributes: dict[str, Any] = dict(row.attributes)
    if row.permissions:
        attributes["permissions"] = list(row.permissions)
    return attributes


def record_of(
    row: SheetRow, kind: RecipientKind, attributes: dict[str, Any] | None = None
) -> RecipientRecord:
    if attributes is None:
        attributes = attributes_of(row)
    return RecipientRecord(
        external_id=row.email,
        kind=kind,
        addresses=(row.email, *row.aliases),
        primary=row.email,
        display_name=row.display_name,
        enabled=row.enabled,
        attributes=attributes,
    )


def bare_group(address: str, name: str | None = None) -> RecipientRecord:
    """A group named only in the groups column: by address (`name` from `Name <address>`)."""
    return RecipientRecord(
        external_id=address, kind=_GROUP, addresses=(address,), primary=address, display_name=name
    )


def named_group(external_id: str, name: str) -> RecipientRecord:
    """An address-less group: it carries membership, and no lookup can match it."""
    return RecipientRecord(external_id=external_id, kind=_GROUP, addresses=(), display_name=name)


def diff_row(external_id: str, kind: str, name: str | None, row: int | None = None) -> DiffRow:
    """An address-less group is listed by its name; everything else by its address."""
    if external_id.startswith(NAMED_PREFIX):
        return DiffRow(row, None, kind, name=name)
    return DiffRow(row, external_id, kind)

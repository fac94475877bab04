"""The example file behind `roster import --template`: every column Roster reads, filled in."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Font

HEADERS = (
    "email",
    "display name",
    "aliases",
    "enabled",
    "kind",
    "groups",
    "permissions",
    "department",
    "job title",
)
# Shown on the groups header of the .xlsx (and in the README).
GROUPS_NOTE = (
    "Groups this row is a member of, separated by ; or , : a group address "
    "(staff@example.com), a name and address (Front desk <frontdesk@example.com>), or a "
    "group name (Finance Team), which is matched to an existing group of that name "
    "(case does not matter) or creates a group without an address. A name cannot contain "
    "; or , (they separate entries)."
)
EXAMPLE_ROWS = (
    (
        "alice.smith@example.com",
        "Alice Smith",
        "alice@example.com; a.smith@example.com",
        "yes",
        "user",
        "staff@example.com; Finance Team",  # a group by address, and one by name
        "send-as",
        "Finance",
        "Controller",
    ),
    (
        "info@example.com",
        "Info (shared)",
        "contact@example.com",
        "no",
        "shared mailbox",
        "Front desk <frontdesk@example.com>",  # a new group: its name and its address
        "",
        "Front desk",
        "",
    ),
    (
        "staff@example.com",
        "All staff",
        "everyone@example.com",
        "yes",
        "group",
        "",
        "",
        "",
        "",
    ),
)


def write_template(path: str | os.PathLike[str]) -> Path:
    """Write an .xlsx or .csv (chosen by suffix) that imports without errors as it is."""
    target = Path(path)
    suffix = target.suffix.casefold()
    if suffix == ".csv":
        # utf-8-sig: Excel opens a BOM-less UTF-8 CSV as the local code page.
        with target.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADERS)
            writer.writerows(EXAMPLE_ROWS)
        return target
    if suffix != ".xlsx":
        raise ValueError(f"template must be .xlsx or .csv, not {target.suffix or 'no suffix'!r}")
    workbook = Workbook()
    sheet = workbook.worksheets[0]
    sheet.title = "Recipients"
    sheet.append(HEADERS)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        if cell.value == "groups":
            cell.comment = Comment(GROUPS_NOTE, "Roster", width=360, height=140)
    for row in EXAMPLE_ROWS:
        sheet.append(row)
    for column, width in zip("ABCDEFGHI", (28, 18, 40, 9, 16, 36, 14, 12, 12), strict=True):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A2"
    workbook.save(target)
    return target

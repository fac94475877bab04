"""The downloadable template has every column and imports cleanly as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.connectors.base import RecipientKind
from app.connectors.spreadsheet import read_spreadsheet, write_template
from app.connectors.spreadsheet.columns import Field, map_columns
from app.connectors.spreadsheet.template import HEADERS


@pytest.mark.parametrize("name", ["template.xlsx", "template.csv", "TEMPLATE.XLSX"])
def test_template_reads_back_without_errors(tmp_path: Path, name: str) -> None:
    path = write_template(tmp_path / name)
    result = read_spreadsheet(path, filename=path.name)
    assert result.errors == []
    alice, info, staff = result.rows
    assert alice.aliases == ("alice@example.com", "a.smith@example.com")
    assert (alice.groups, alice.group_names) == (("staff@example.com",), ("Finance Team",))
    assert info.group_labels == (("frontdesk@example.com", "Front desk"),)
    assert alice.attributes == {"department": "Finance", "job title": "Controller"}
    assert (info.kind, info.enabled) == (RecipientKind.SHARED_MAILBOX, False)
    assert staff.kind is RecipientKind.GROUP


def test_template_explains_the_groups_column_on_its_header(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    sheet = load_workbook(write_template(tmp_path / "template.xlsx")).worksheets[0]
    (groups,) = (cell for cell in sheet[1] if cell.value == "groups")
    assert groups.comment is not None
    assert "Front desk <frontdesk@example.com>" in groups.comment.text
    assert "A name cannot contain ; or ," in groups.comment.text


def test_template_has_every_recognized_column() -> None:
    columns = map_columns(list(HEADERS), max_columns=200)
    assert set(columns.fields) == set(Field)
    assert columns.attributes  # and shows that other columns become attributes


def test_template_refuses_other_suffixes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"template must be \.xlsx or \.csv, not '\.xls'"):
        write_template(tmp_path / "template.xls")

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
    assert alice.groups == ("staff@example.com",)
    assert alice.attributes == {"department": "Finance", "job title": "Controller"}
    assert (info.kind, info.enabled) == (RecipientKind.SHARED_MAILBOX, False)
    assert staff.kind is RecipientKind.GROUP


def test_template_has_every_recognized_column() -> None:
    columns = map_columns(list(HEADERS), max_columns=200)
    assert set(columns.fields) == set(Field)
    assert columns.attributes  # and shows that other columns become attributes


def test_template_refuses_other_suffixes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"template must be \.xlsx or \.csv, not '\.xls'"):
        write_template(tmp_path / "template.xls")

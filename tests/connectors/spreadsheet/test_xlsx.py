"""XLSX written by openpyxl and by hand (shared strings, prefixes, dates) reads like the CSV."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from openpyxl import Workbook

from app.connectors.base import RecipientKind
from app.connectors.spreadsheet import SpreadsheetError, package, read_spreadsheet, xlsx
from tests.connectors.spreadsheet.files import (
    MAIN_NS,
    handmade_xlsx,
    inline_row,
    sheet_xml,
    xlsx_bytes,
)

PEOPLE: list[list[Any]] = [
    ["Email", "Display Name", "Proxy Addresses", "Status", "Type", "Employee ID", "Start"],
    ["a@example.com", "A", "smtp:a2@example.com", True, "User", 1042, dt.date(2024, 3, 1)],
    ["info@example.com", "Info", None, "disabled", "Shared", 7.5, None],
]


def test_first_sheet_of_an_openpyxl_workbook_is_read() -> None:
    data = xlsx_bytes({"People": PEOPLE, "Other": [["email"], ["z@example.com"]]})
    result = read_spreadsheet(data, filename="people.xlsx")
    assert result.errors == []
    assert (result.format, result.sheet) == ("xlsx", "People")
    a, info = result.rows
    assert (a.row, a.email, a.aliases, a.enabled, a.kind) == (
        2,
        "a@example.com",
        ("a2@example.com",),
        True,
        RecipientKind.USER,
    )
    assert a.attributes == {"Employee ID": "1042", "Start": "2024-03-01"}
    assert (info.enabled, info.kind, info.attributes) == (
        False,
        RecipientKind.SHARED_MAILBOX,
        {"Employee ID": "7.5"},
    )


def test_a_named_sheet_is_read_and_an_unknown_one_lists_the_sheets() -> None:
    data = xlsx_bytes({"People": PEOPLE, "Rooms": [["email", "kind"], ["r@example.com", "room"]]})
    result = read_spreadsheet(data, filename="x.xlsx", sheet="rooms")
    assert (result.sheet, [r.email for r in result.rows]) == ("Rooms", ["r@example.com"])
    with pytest.raises(SpreadsheetError) as caught:
        read_spreadsheet(data, filename="x.xlsx", sheet="Staff")
    assert caught.value.message == (
        "the workbook has no sheet named 'Staff'; its sheets are 'People', 'Rooms'."
    )


def test_formula_cells_are_refused_with_their_row_and_column() -> None:
    workbook = Workbook()
    sheet = workbook.worksheets[0]
    sheet.append(["email", "display name"])
    sheet.append(["a@example.com", '=UPPER("a")'])
    sheet.append(["b@example.com", "B"])
    path_bytes = _save(workbook)
    result = read_spreadsheet(path_bytes, filename="x.xlsx")
    assert [(e.row, e.column) for e in result.errors] == [(2, "display name")]
    assert "formula" in result.errors[0].reason
    assert [r.email for r in result.rows] == ["b@example.com"]


def test_blank_and_styled_empty_rows_keep_spreadsheet_row_numbers() -> None:
    rows = (
        inline_row(1, ["email", "name"])
        + '<row r="2"><c r="A2" s="1"/></row>'
        + inline_row(5, ["e@example.com", "E"])
    )
    result = read_spreadsheet(handmade_xlsx(sheet_xml(rows)), filename="x.xlsx")
    assert [(r.row, r.email) for r in result.rows] == [(5, "e@example.com")]


def test_shared_strings_rich_text_and_phonetic_runs() -> None:
    shared = (
        f'<?xml version="1.0"?><sst xmlns="{MAIN_NS}"><si><t>email</t></si><si><t>name</t></si>'
        "<si><t>a@example.com</t></si>"
        "<si><r><t>Ann</t></r><r><rPr><b/></rPr><t>e</t></r><rPh><t>ignored</t></rPh></si></sst>"
    )
    rows = (
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
        '<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2" t="s"><v>3</v></c></row>'
    )
    result = read_spreadsheet(
        handmade_xlsx(sheet_xml(rows), shared_strings_xml=shared), filename="x.xlsx"
    )
    assert [(r.email, r.display_name) for r in result.rows] == [("a@example.com", "Anne")]


def test_prefixed_tags_booleans_and_date_styles() -> None:
    styles = (
        f'<?xml version="1.0"?><styleSheet xmlns="{MAIN_NS}"><numFmts count="1">'
        '<numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd hh:mm"/></numFmts>'
        '<cellXfs count="3"><xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="164"/></cellXfs>'
        "</styleSheet>"
    )
    rows = (
        '<x:row r="1"><x:c r="A1" t="inlineStr"><x:is><x:t>email</x:t></x:is></x:c>'
        '<x:c r="B1" t="inlineStr"><x:is><x:t>enabled</x:t></x:is></x:c>'
        '<x:c r="C1" t="inlineStr"><x:is><x:t>hired</x:t></x:is></x:c>'
        '<x:c r="D1" t="inlineStr"><x:is><x:t>seen</x:t></x:is></x:c></x:row>'
        '<x:row r="2"><x:c r="A2" t="inlineStr"><x:is><x:t>a@example.com</x:t></x:is></x:c>'
        '<x:c r="B2" t="b"><x:v>0</x:v></x:c><x:c r="C2" s="1"><x:v>45352</x:v></x:c>'
        '<x:c r="D2" s="2"><x:v>45352.5</x:v></x:c></x:row>'
    )
    data = handmade_xlsx(sheet_xml(rows, prefix="x"), styles_xml=styles)
    [row] = read_spreadsheet(data, filename="x.xlsx").rows
    assert row.enabled is False
    assert row.attributes == {"hired": "2024-03-01", "seen": "2024-03-01T12:00:00"}


def test_a_shared_formula_without_text_is_still_a_formula() -> None:
    rows = inline_row(1, ["email", "n"]) + (
        '<row r="2"><c r="A2" t="inlineStr"><is><t>a@example.com</t></is></c>'
        '<c r="B2"><f t="shared" si="0"/><v>3</v></c></row>'
    )
    result = read_spreadsheet(handmade_xlsx(sheet_xml(rows)), filename="x.xlsx")
    assert [(e.row, e.column) for e in result.errors] == [(2, "n")]


def _save(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_markup_after_a_cell_never_changes_its_value() -> None:
    """Text and formulas outside a cell (whitespace, data validations in <extLst>) and phonetic
    runs are not part of any value, even for the last cell of the sheet."""
    rows = inline_row(1, ["email", "name"]) + (
        '<row r="2">\n  <c r="B2" t="inlineStr">\n    <is><r><t>An</t></r>\n    <r><t>n</t></r>'
        '<rPh sb="0" eb="1"><t>ignored</t></rPh></is>\n  </c>\n'
        '  <c r="A2" t="inlineStr"><is><t>a@example.com</t></is></c>\n</row>'
    )
    validations = (
        '<extLst><ext xmlns:x14="urn:x14" xmlns:xm="urn:xm" uri="{CCE6A557}">'
        "<x14:dataValidations><x14:dataValidation><x14:formula1><xm:f>Lists!$A$1:$A$3</xm:f>"
        "</x14:formula1><xm:sqref>B2</xm:sqref></x14:dataValidation></x14:dataValidations>"
        "<t>stray</t></ext></extLst></worksheet>"
    )
    data = handmade_xlsx(sheet_xml(rows).replace("</worksheet>", validations))
    result = read_spreadsheet(data, filename="x.xlsx")
    assert result.errors == []
    assert [(r.row, r.email, r.display_name) for r in result.rows] == [(2, "a@example.com", "Ann")]


def test_a_cell_reference_without_a_column_is_a_damaged_workbook() -> None:
    rows = (
        inline_row(1, ["email"]) + '<row r="2"><c r="2" t="inlineStr"><is><t>a</t></is></c></row>'
    )
    with pytest.raises(SpreadsheetError) as caught:
        read_spreadsheet(handmade_xlsx(sheet_xml(rows)), filename="x.xlsx")
    assert caught.value.message == "the workbook is damaged: a cell reference has no column."


def test_values_split_across_reads_and_long_markup_read_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tiny reads split every value and tag; a tiny tag memory makes the parser settle and drop
    what it recorded at every read. Neither may change what is read."""
    monkeypatch.setattr(package, "_CHUNK", 7)
    monkeypatch.setattr(xlsx, "_MAX_ENDS", 0)
    test_markup_after_a_cell_never_changes_its_value()
    test_shared_strings_rich_text_and_phonetic_runs()
    test_prefixed_tags_booleans_and_date_styles()
    test_a_shared_formula_without_text_is_still_a_formula()

"""Builders for the spreadsheet files the tests read: CSV variants, real and hand-made XLSX."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"


def csv_bytes(
    rows: Sequence[Sequence[str]],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    newline: str = "\r\n",
) -> bytes:
    """CSV as spreadsheet programs write it: quotes only where needed, CRLF by default."""
    lines = []
    for row in rows:
        cells = []
        for cell in row:
            if any(ch in cell for ch in (delimiter, '"', "\n", "\r")):
                cell = '"' + cell.replace('"', '""') + '"'
            cells.append(cell)
        lines.append(delimiter.join(cells))
    return (newline.join(lines) + newline).encode(encoding)


def xlsx_bytes(sheets: dict[str, Sequence[Sequence[Any]]]) -> bytes:
    """A real workbook written by openpyxl, one sheet per entry, in order."""
    workbook = Workbook()
    workbook.remove(workbook.worksheets[0])
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def handmade_xlsx(
    sheet_xml: str | bytes,
    *,
    shared_strings_xml: str | None = None,
    styles_xml: str | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """The minimal parts Excel needs, so a test controls the sheet XML byte for byte."""
    rels = [f'<Relationship Id="rId1" Type="{REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>']
    if shared_strings_xml is not None:
        rels.append(
            f'<Relationship Id="rId2" Type="{REL_NS}/sharedStrings" Target="sharedStrings.xml"/>'
        )
    if styles_xml is not None:
        rels.append(f'<Relationship Id="rId3" Type="{REL_NS}/styles" Target="styles.xml"/>')
    parts: dict[str, str | bytes] = {
        "[Content_Types].xml": (
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"/>'
        ),
        "_rels/.rels": (
            f'<?xml version="1.0"?><Relationships xmlns="{PKG_REL_NS}"><Relationship Id="rId1" '
            f'Type="{REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<?xml version="1.0"?><workbook xmlns="{MAIN_NS}" xmlns:r="{REL_NS}"><sheets>'
            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<?xml version="1.0"?><Relationships xmlns="{PKG_REL_NS}">{"".join(rels)}'
            "</Relationships>"
        ),
        "xl/worksheets/sheet1.xml": sheet_xml,
    }
    if shared_strings_xml is not None:
        parts["xl/sharedStrings.xml"] = shared_strings_xml
    if styles_xml is not None:
        parts["xl/styles.xml"] = styles_xml
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def sheet_xml(rows_xml: str, *, prefix: str = "") -> str:
    """Wrap `<row>` elements in a worksheet; `prefix` writes `<x:worksheet>`-style tags."""
    if prefix:
        return (
            f'<?xml version="1.0"?><{prefix}:worksheet xmlns:{prefix}="{MAIN_NS}">'
            f"<{prefix}:sheetData>{rows_xml}</{prefix}:sheetData></{prefix}:worksheet>"
        )
    return (
        f'<?xml version="1.0"?><worksheet xmlns="{MAIN_NS}"><sheetData>{rows_xml}</sheetData>'
        "</worksheet>"
    )


def inline_row(number: int, values: Sequence[str]) -> str:
    cells = "".join(
        f'<c r="{chr(65 + i)}{number}" t="inlineStr"><is><t>{v}</t></is></c>'
        for i, v in enumerate(values)
        if v
    )
    return f'<row r="{number}">{cells}</row>'

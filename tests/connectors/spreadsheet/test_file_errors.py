"""Whole files Roster refuses, each with a message that says what to do, in bounded time."""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest

from app.connectors.spreadsheet import ReadLimits, SpreadsheetError, read_spreadsheet
from tests.connectors.spreadsheet.files import (
    MAIN_NS,
    PKG_REL_NS,
    REL_NS,
    csv_bytes,
    handmade_xlsx,
    inline_row,
    sheet_xml,
    xlsx_bytes,
)

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)


def refusal(data: bytes, filename: str = "people.csv", **kwargs: object) -> str:
    with pytest.raises(SpreadsheetError) as caught:
        read_spreadsheet(data, filename=filename, **kwargs)  # type: ignore[arg-type]
    return caught.value.message


def test_empty_file() -> None:
    assert refusal(b"") == "the file is empty."
    assert refusal(b"\xef\xbb\xbf\r\n , \r\n") == "the file is empty: no header row and no data."


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"email,name\r\n", "people.csv"),
        (b"\r\nemail,name\r\n,\r\n", "people.csv"),
        (xlsx_bytes({"S": [["email", "name"]]}), "people.xlsx"),
    ],
)
def test_header_only(data: bytes, filename: str) -> None:
    assert refusal(data, filename).startswith("the file has a header row (row ")
    assert refusal(data, filename).endswith(") but no data rows.")


def test_no_email_column_lists_headers_found_and_names_accepted() -> None:
    message = refusal(csv_bytes([["Name", "Login"], ["Anne", "anne"]]))
    assert message == (
        "no email column. Headers found in the first row: 'Name', 'Login'. Name the address "
        "column one of: 'email', 'e-mail', 'mail', 'email address', 'primary smtp address' "
        "(case does not matter)."
    )


@pytest.mark.parametrize("header", ["Password", "Initial password", "PWD", "user_password"])
def test_a_password_column_is_refused(header: str) -> None:
    message = refusal(csv_bytes([["email", header], ["a@example.com", "hunter2"]]))
    assert message == (
        f"the file has a password column ({header!r}). Roster never stores passwords; remove "
        "the column and import again."
    )


def test_two_columns_for_one_field_are_refused() -> None:
    message = refusal(csv_bytes([["email", "Mail"], ["a@example.com", "b@example.com"]]))
    assert message == "the columns 'email' and 'Mail' both mean email; keep one."
    message = refusal(csv_bytes([["email", "Dept", "dept"], ["a@example.com", "x", "y"]]))
    assert message == "two columns are headed 'Dept'; give each column its own name."


@pytest.mark.parametrize("filename", ["old.xls", "renamed.xlsx", "export.csv"])
def test_legacy_xls_is_detected_by_its_bytes(filename: str) -> None:
    assert refusal(OLE2, filename).startswith(
        "this is a legacy Excel 97-2003 workbook (.xls) or a password-protected workbook, "
        "which Roster cannot read. Open it in Excel or LibreOffice and save it as "
        "'Excel Workbook (.xlsx)'"
    )


def test_file_over_the_size_limit() -> None:
    data = csv_bytes([["email"], *([f"user{i}@example.com"] for i in range(100_000))])
    assert refusal(data, max_bytes=1024 * 1024) == (
        "the file is 2.2 MiB; the limit is 1 MiB. Split it into several files."
    )


@pytest.mark.parametrize(
    "data", [b"%PDF-1.7\n...", b"\x89PNG\r\n\x1a\n\x00\x00", b"\x00\x01\x02binary\x00"]
)
def test_unknown_file_type(data: bytes) -> None:
    assert refusal(data, "upload.bin") == (
        "'upload.bin' is not a spreadsheet Roster can read; use .xlsx or .csv (comma, semicolon, "
        "tab or pipe separated)."
    )


def test_a_web_page_named_xls_is_explained() -> None:
    message = refusal(b"<html><body><table><tr><td>email</td></tr></table>", "export.xls")
    assert message.startswith("'export.xls' is a web page or XML file, not CSV")


def test_text_named_xlsx_is_refused() -> None:
    message = refusal(b"email\na@example.com\n", "people.xlsx")
    assert message.startswith("'people.xlsx' is named like an Excel workbook but is not one.")


def test_damaged_zip_and_opendocument() -> None:
    assert refusal(b"PK\x03\x04" + b"\x00" * 100, "x.xlsx").startswith(
        "the file is not a valid .xlsx workbook (the zip container is damaged)."
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", "<office:document-content/>")
    assert refusal(buffer.getvalue(), "x.ods").startswith(
        "this is an OpenDocument spreadsheet (.ods)."
    )


def test_binary_xlsb_workbook_is_explained() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{PKG_REL_NS}"><Relationship Id="rId1" '
            f'Type="{REL_NS}/officeDocument" Target="xl/workbook.bin"/></Relationships>',
        )
        archive.writestr("xl/workbook.bin", b"\x83\x01\x00")
    assert refusal(buffer.getvalue(), "x.xlsb").startswith(
        "this is an Excel binary workbook (.xlsb), which Roster cannot read."
    )


def test_csv_that_is_not_utf8_says_how_to_save_it() -> None:
    message = refusal("email;name\r\na@example.com;Müller\r\n".encode("cp1252"))
    assert message.startswith("the file is not UTF-8 text (near row ")
    assert "'CSV UTF-8 (Comma delimited)'" in message


def test_sheet_name_on_a_csv_is_refused() -> None:
    assert refusal(b"email\na@example.com\n", sheet="People") == (
        "a sheet name only applies to .xlsx files; this file is CSV."
    )


def test_too_many_rows_and_columns() -> None:
    limits = ReadLimits(max_rows=3, max_columns=4)
    rows = [["email"], *([f"u{i}@example.com"] for i in range(4))]
    assert refusal(csv_bytes(rows), limits=limits) == (
        "the file has more than 3 data rows; split it into several files and import them in "
        "merge mode."
    )
    assert refusal(
        csv_bytes([["email", "a", "b", "c", "d"], ["x@example.com"]]), limits=limits
    ) == ("the header row has 5 columns; the limit is 4. Remove columns Roster does not need.")
    wide = inline_row(1, ["email"]) + (
        '<row r="2"><c r="A2" t="inlineStr"><is><t>a@example.com</t></is></c>'
        '<c r="XFD2" t="inlineStr"><is><t>far away</t></is></c></row>'
    )
    assert refusal(handmade_xlsx(sheet_xml(wide)), "x.xlsx", limits=limits) == (
        "row 2 has a value in column 16384; the limit is 4 columns. Remove columns Roster does "
        "not need."
    )


def test_zip_bomb_is_refused_from_the_zip_directory_quickly() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as part:
            part.write(f'<worksheet xmlns="{MAIN_NS}"><sheetData>'.encode())
            block = b" " * (1024 * 1024)
            for _ in range(64):  # 64 MiB of whitespace, ~64 KiB compressed
                part.write(block)
            part.write(b"</sheetData></worksheet>")
    started = time.monotonic()
    message = refusal(buffer.getvalue(), "bomb.xlsx")
    assert time.monotonic() - started < 1
    assert message.startswith("the workbook was refused: part 'xl/worksheets/sheet1.xml' expands ")
    assert message.endswith(
        " times (a zip bomb?). Save the sheet again from Excel or LibreOffice, or export CSV."
    )


def test_total_expanded_size_is_capped() -> None:
    data = xlsx_bytes({"S": [["email"], ["a@example.com"]]})
    message = refusal(data, "x.xlsx", limits=ReadLimits(max_uncompressed_bytes=1000))
    assert message.startswith("the workbook expands to 0 MiB; the limit is 0 MiB.")
    message = refusal(data, "x.xlsx", limits=ReadLimits(max_zip_members=3))
    assert message.startswith("the workbook has ")


def test_a_part_larger_than_declared_is_never_read_past_its_declared_size() -> None:
    rows = inline_row(1, ["email"]) + "".join(
        inline_row(n, [f"user{n}@example.com"]) for n in range(2, 5000)
    )
    data = bytearray(handmade_xlsx(sheet_xml(rows)))
    # Find the central directory entry of the sheet and declare it 100 bytes long.
    entry = data.index(b"PK\x01\x02")
    while not data[entry + 46 :].startswith(b"xl/worksheets/sheet1.xml"):
        entry = data.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", data, entry + 24, 100)
    assert refusal(bytes(data), "liar.xlsx").startswith("the workbook is damaged")


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10)
    )
    + f']><worksheet xmlns="{MAIN_NS}"><sheetData>'
    + '<row r="1"><c r="A1" t="inlineStr"><is><t>email</t></is></c></row>'
    + '<row r="2"><c r="A2" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
    + "</sheetData></worksheet>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    f'<sst xmlns="{MAIN_NS}"><si><t>&x;</t></si></sst>'
)


@pytest.mark.parametrize(
    "data",
    [
        handmade_xlsx(BILLION_LAUGHS),
        handmade_xlsx(sheet_xml(inline_row(1, ["email"])), shared_strings_xml=XXE),
    ],
    ids=["billion-laughs-in-sheet", "external-entity-in-shared-strings"],
)
def test_xml_entity_declarations_are_refused(data: bytes) -> None:
    started = time.monotonic()
    assert refusal(data, "evil.xlsx") == (
        "the workbook was refused: it contains an XML DTD or entity declaration (<!DOCTYPE or "
        "<!ENTITY), which Excel never writes and which can expand without bound."
    )
    assert time.monotonic() - started < 1


def test_a_csv_cell_beyond_the_csv_field_limit_names_the_row() -> None:
    data = b"email,notes\r\na@example.com,ok\r\nb@example.com," + b"x" * 200_000 + b"\r\n"
    assert refusal(data) == ("row 3 cannot be read as CSV: field larger than field limit (131072)")

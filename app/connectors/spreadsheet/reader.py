"""Read a recipients spreadsheet (CSV or XLSX) into good rows and row errors, streaming.

`read_spreadsheet` collects everything for a dry run or an import; `open_spreadsheet` streams for
callers that show progress. Blocking: call it through `asyncio.to_thread`. No database here.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from types import TracebackType
from typing import IO, BinaryIO, Self

from app.connectors.spreadsheet.cells import FormulaCell
from app.connectors.spreadsheet.columns import ColumnMap, Field, map_columns
from app.connectors.spreadsheet.csvfile import iter_csv_records
from app.connectors.spreadsheet.errors import SpreadsheetError
from app.connectors.spreadsheet.results import (
    DEFAULT_LIMITS,
    ReadLimits,
    RowError,
    SheetReadResult,
    SheetRow,
)
from app.connectors.spreadsheet.rows import RowBuilder
from app.connectors.spreadsheet.xlsx import XlsxWorkbook

logger = logging.getLogger(__name__)

Source = str | os.PathLike[str] | bytes | BinaryIO

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_BINARY = (b"%PDF", b"\x1f\x8b", b"\x89PNG", b"\xff\xd8\xff", b"Rar!", b"7z\xbc\xaf")
_MARKUP = (b"<?xml", b"<html", b"<!doctype", b"<table")


class SpreadsheetStream:
    """An open file: `headers`/`columns` are known on entry; iterate for rows and errors.

    A repeated address is reported on both rows when the second is met, so a RowError may name
    a row already yielded as a SheetRow: drop that row (`read_spreadsheet` does).
    """

    def __init__(
        self, source: Source, *, filename: str, sheet: str | None, limits: ReadLimits
    ) -> None:
        self.limits = limits
        self.data_rows = 0
        # Addresses on refused rows: a partial replace import must not remove their recipients.
        self.refused_addresses: set[str] = set()
        self._stack = ExitStack()
        try:
            stream = self._stack.enter_context(_SourceStream(source, limits))
            self.format, self.sheet, records = _open_records(
                stream, filename, sheet, limits, self._stack
            )
            self._records = records
            self._header_row, header = _first_row(records)
            self.columns: ColumnMap = map_columns(header, max_columns=limits.max_columns)
        except BaseException:
            self._stack.close()
            raise
        self.headers = self.columns.headers

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def __iter__(self) -> Iterator[SheetRow | RowError]:
        builder = RowBuilder(self.columns, self.limits)
        seen: dict[str, int] = {}  # address -> row * 2 + (1 if it was an alias)
        for number, cells in self._records:
            if _is_blank(cells):
                continue  # blank rows are skipped, as spreadsheet users expect
            self.data_rows += 1
            if self.data_rows > self.limits.max_rows:
                raise SpreadsheetError(
                    f"the file has more than {self.limits.max_rows:,} data rows; split it into "
                    "several files and import them in merge mode."
                )
            built = builder.build(number, cells)
            yield from built.errors
            if built.row is None:
                self.refused_addresses.update(built.addresses)
            for index, address in enumerate(built.addresses):
                is_alias = index >= built.alias_from
                earlier = seen.setdefault(address, number * 2 + is_alias)
                if earlier // 2 != number:
                    yield from self._duplicate(address, earlier, number, is_alias)
                    self.refused_addresses.update(built.addresses)
                    built.row = None
            if built.row is not None:
                yield built.row
        if self.data_rows == 0:
            raise SpreadsheetError(
                f"the file has a header row (row {self._header_row}) but no data rows."
            )

    def _duplicate(
        self, address: str, earlier: int, number: int, is_alias: bool
    ) -> Iterator[RowError]:
        first_row, first_alias = divmod(earlier, 2)
        headers = {True: self._header(alias=True), False: self._header(alias=False)}
        yield RowError(
            number,
            headers[is_alias],
            f"{address} is also on row {first_row}; each address may appear once in the file",
        )
        yield RowError(
            first_row,
            headers[bool(first_alias)],
            f"{address} is also on row {number}; each address may appear once in the file",
        )

    def _header(self, *, alias: bool) -> str:
        position = self.columns.fields.get(Field.ALIASES if alias else Field.EMAIL)
        return self.columns.header_of(position) if position is not None else "email"


def open_spreadsheet(
    source: Source,
    *,
    filename: str,
    sheet: str | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
) -> SpreadsheetStream:
    """Open and check the file and its header; raises SpreadsheetError for a refused file."""
    return SpreadsheetStream(source, filename=filename, sheet=sheet, limits=limits)


def read_spreadsheet(
    source: Source,
    *,
    filename: str,
    sheet: str | None = None,
    max_bytes: int | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
    progress: Callable[[int], None] | None = None,
) -> SheetReadResult:
    """Read the whole file; rows with any error are left out of `rows` and listed in `errors`."""
    if max_bytes is not None:
        limits = dataclasses.replace(limits, max_bytes=max_bytes)
    rows: list[SheetRow] = []
    errors: list[RowError] = []
    bad_rows: set[int] = set()
    error_count = 0
    with open_spreadsheet(source, filename=filename, sheet=sheet, limits=limits) as stream:
        for item in stream:
            if isinstance(item, RowError):
                error_count += 1
                bad_rows.add(item.row)
                if len(errors) < limits.max_errors:
                    errors.append(item)
                continue
            rows.append(item)
            if progress is not None and stream.data_rows % 1000 == 0:
                progress(stream.data_rows)
    refused = set(stream.refused_addresses)
    if bad_rows:
        kept = []
        for r in rows:
            if r.row in bad_rows:  # an earlier row named by a later duplicate
                refused.update((r.email, *r.aliases))
            else:
                kept.append(r)
        rows = kept
    errors.sort(key=lambda e: e.row)
    logger.info(
        "spreadsheet read: format=%s rows=%d good=%d errors=%d",
        stream.format,
        stream.data_rows,
        len(rows),
        error_count,
    )
    return SheetReadResult(
        format=stream.format,
        sheet=stream.sheet,
        headers=stream.headers,
        attribute_columns=tuple(name for _, name in stream.columns.attributes),
        rows=rows,
        errors=errors,
        error_count=error_count,
        data_rows=stream.data_rows,
        refused_addresses=frozenset(refused),
    )


def _is_blank(cells: list[str]) -> bool:
    if "".join(cells).strip():  # one C call for the usual row with values
        return False
    return not any(isinstance(c, FormulaCell) for c in cells)


def _first_row(records: Iterator[tuple[int, list[str]]]) -> tuple[int, list[str]]:
    for number, cells in records:
        if not _is_blank(cells):
            return number, cells
    raise SpreadsheetError("the file is empty: no header row and no data.")


class _SourceStream:
    """A seekable binary stream of at most `max_bytes`, closed on exit if we opened it."""

    def __init__(self, source: Source, limits: ReadLimits) -> None:
        self._source = source
        self._limits = limits
        self._owned: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        source = self._source
        if isinstance(source, bytes | bytearray | memoryview):
            stream: IO[bytes] = io.BytesIO(source)
        elif isinstance(source, str | os.PathLike):
            stream = self._owned = open(source, "rb")
        elif source.seekable():
            stream = source
        else:
            stream = self._owned = tempfile.SpooledTemporaryFile(max_size=8 * 2**20)
            shutil.copyfileobj(_Capped(source, self._limits.max_bytes + 1), stream)
            stream.seek(0)
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)
        if size == 0:
            raise SpreadsheetError("the file is empty.")
        if size > self._limits.max_bytes:
            raise SpreadsheetError(
                f"the file is {size / 2**20:,.1f} MiB; the limit is "
                f"{self._limits.max_bytes / 2**20:,.0f} MiB. Split it into several files."
            )
        return stream

    def __exit__(self, *exc: object) -> None:
        if self._owned is not None:
            self._owned.close()


class _Capped(io.RawIOBase):
    """Reads at most `limit` bytes from a non-seekable upload, so the copy stays bounded."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._inner.read(size) if size else b""
        self._left -= len(data)
        return data


def _open_records(
    stream: IO[bytes], filename: str, sheet: str | None, limits: ReadLimits, stack: ExitStack
) -> tuple[str, str | None, Iterator[tuple[int, list[str]]]]:
    """Decide the format from the bytes, not the name; the name only improves messages."""
    start = stream.tell()
    head = stream.read(4096)
    stream.seek(start)
    suffix = os.path.splitext(filename)[1].casefold()
    if head.startswith(_OLE2):
        raise SpreadsheetError(
            "this is a legacy Excel 97-2003 workbook (.xls) or a password-protected workbook, "
            "which Roster cannot read. Open it in Excel or LibreOffice and save it as "
            "'Excel Workbook (.xlsx)' or 'CSV UTF-8', without a password."
        )
    if head.startswith(_ZIP):
        workbook = XlsxWorkbook(stream, limits)
        stack.callback(workbook.close)
        name, path = workbook.sheet_path(sheet)
        rows = workbook.rows(path)
        stack.callback(rows.close)  # before the stream it reads from
        return "xlsx", name, rows
    if suffix in (".xlsx", ".xlsm"):
        raise SpreadsheetError(
            f"{filename!r} is named like an Excel workbook but is not one. Open it in Excel or "
            "LibreOffice and save it as .xlsx or CSV UTF-8."
        )
    text_head = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(_BINARY) or (
        b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))
    ):
        raise SpreadsheetError(
            f"{filename!r} is not a spreadsheet Roster can read; use .xlsx or .csv "
            "(comma, semicolon, tab or pipe separated)."
        )
    if text_head.startswith(_MARKUP):
        raise SpreadsheetError(
            f"{filename!r} is a web page or XML file, not CSV (some systems export those with an "
            ".xls name). Open it in Excel or LibreOffice and save it as .xlsx or CSV UTF-8."
        )
    if sheet is not None:
        raise SpreadsheetError("a sheet name only applies to .xlsx files; this file is CSV.")
    records = iter_csv_records(stream)
    stack.callback(records.close)
    return "csv", None, records

"""XLSX read with a streaming expat parser over a zip that was checked before anything inflated.

Why not openpyxl or python-calamine (figures in bench/spreadsheet_read_bench.py): openpyxl's
read-only mode keeps memory flat but needs ~12 s per 100,000 rows here; calamine needs ~1 s but
loads the whole sheet (RSS grows with rows) and cannot tell formula cells from values. This
expat parser parses 100,000 rows (800,000 cells) in ~2.5 s CPU with flat memory and sees every
`<f>` formula; most of that is expat calling Python once per element, see `_SheetParser`.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from typing import IO

from app.connectors.spreadsheet.cells import FormulaCell
from app.connectors.spreadsheet.columns import column_letter
from app.connectors.spreadsheet.errors import SpreadsheetError
from app.connectors.spreadsheet.package import check_zip, drain, local_name, parse_part
from app.connectors.spreadsheet.results import ReadLimits

_MAX_ENDS = 10_000  # end tags a sheet parser remembers between cells (see `_forget_ends`)
_BUILTIN_DATE_FORMATS = frozenset((*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)))


class XlsxWorkbook:
    """An opened, checked workbook; `rows(sheet)` streams one sheet."""

    def __init__(self, stream: IO[bytes], limits: ReadLimits) -> None:
        self._limits = limits
        try:
            self._zip = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, ValueError) as exc:
            raise SpreadsheetError(
                "the file is not a valid .xlsx workbook (the zip container is damaged). "
                "Open it in Excel or LibreOffice and save it again as .xlsx or CSV."
            ) from exc
        check_zip(self._zip, limits)
        self._workbook_path = self._office_document()
        rels = self._relationships(self._workbook_path)
        self.sheets: list[tuple[str, str]] = []  # (name, part path)
        self._date1904 = False
        self._read_workbook(rels)
        self._shared: list[str] = []
        self._date_styles: set[str] = set()
        for rel_type, target in rels.values():
            if rel_type.endswith("/sharedStrings"):
                self._shared = _read_shared_strings(self._open_part, target)
            elif rel_type.endswith("/styles"):
                self._date_styles = _read_date_styles(self._open_part, target)

    def close(self) -> None:
        self._zip.close()

    def sheet_path(self, sheet: str | None) -> tuple[str, str]:
        if not self.sheets:
            raise SpreadsheetError("the workbook has no worksheet.")
        if sheet is None:
            return self.sheets[0]
        for wanted in (sheet, sheet.casefold()):
            for name, path in self.sheets:
                if name == wanted or name.casefold() == wanted:
                    return name, path
        names = ", ".join(repr(name) for name, _ in self.sheets)
        raise SpreadsheetError(
            f"the workbook has no sheet named {sheet!r}; its sheets are {names}."
        )

    def rows(self, path: str) -> Generator[tuple[int, list[str]], None, None]:
        """Yield (row number, cells as text) for rows holding at least one value."""
        parser = _SheetParser(self._shared, self._date_styles, self._date1904, self._limits)
        part = self._open_part(path)
        yield from parse_part(part, parser.start, parser.end, parser.data, parser.done, plain=True)
        yield from parser.finish()

    def _open_part(self, path: str) -> IO[bytes]:
        try:
            return self._zip.open(path)
        except KeyError as exc:
            raise SpreadsheetError(f"the workbook is damaged: part {path!r} is missing.") from exc

    def _office_document(self) -> str:
        names = set(self._zip.namelist())
        if "mimetype" in names and "content.xml" in names:
            raise SpreadsheetError(
                "this is an OpenDocument spreadsheet (.ods). In LibreOffice choose File > Save As "
                "and pick 'Excel 2007-365 (.xlsx)' or 'Text CSV'."
            )
        for rel_type, target in self._relationships("").values():
            if rel_type.endswith("/officeDocument") and target.endswith(".bin"):
                raise SpreadsheetError(
                    "this is an Excel binary workbook (.xlsb), which Roster cannot read. Open it "
                    "in Excel and save it as 'Excel Workbook (.xlsx)' or 'CSV UTF-8'."
                )
            if rel_type.endswith("/officeDocument"):
                return target
        if "xl/workbook.xml" in names:
            return "xl/workbook.xml"
        raise SpreadsheetError(
            "the zip file is not an Excel workbook. Roster reads .xlsx and .csv files."
        )

    def _relationships(self, part: str) -> dict[str, tuple[str, str]]:
        """Relationship id -> (type, target part path) for `part` ("" = the package)."""
        folder, name = posixpath.split(part)
        rels_path = posixpath.join(folder, "_rels", f"{name}.rels")
        if rels_path not in self._zip.NameToInfo:
            return {}
        found: dict[str, tuple[str, str]] = {}

        def start(tag: str, attrs: dict[str, str]) -> None:
            if local_name(tag) == "Relationship" and attrs.get("TargetMode") != "External":
                target = attrs.get("Target", "")
                path = target[1:] if target.startswith("/") else posixpath.join(folder, target)
                found[attrs.get("Id", "")] = (attrs.get("Type", ""), posixpath.normpath(path))

        drain(parse_part(self._open_part(rels_path), start))
        return found

    def _read_workbook(self, rels: dict[str, tuple[str, str]]) -> None:
        def start(tag: str, attrs: dict[str, str]) -> None:
            local = local_name(tag)
            if local == "sheet":
                rid = next((v for k, v in attrs.items() if k.endswith("relationships id")), "")
                rel_type, target = rels.get(rid, ("", ""))
                if rel_type.endswith("/worksheet"):
                    self.sheets.append((attrs.get("name", ""), target))
            elif local == "workbookPr":
                self._date1904 = attrs.get("date1904", "0").lower() in ("1", "true")

        drain(parse_part(self._open_part(self._workbook_path), start))


def _read_shared_strings(open_part: Callable[[str], IO[bytes]], path: str) -> list[str]:
    strings: list[str] = []
    parts: list[str] = []
    state = {"in_t": False, "skip": 0}

    def start(tag: str, _attrs: dict[str, str]) -> None:
        local = tag.rpartition(":")[2]
        if local == "si":
            parts.clear()
        elif local == "t" and not state["skip"]:
            state["in_t"] = True
        elif local == "rPh":  # phonetic guide text is not part of the value
            state["skip"] += 1

    def end(tag: str) -> None:
        local = tag.rpartition(":")[2]
        if local == "t":
            state["in_t"] = False
        elif local == "rPh":
            state["skip"] -= 1
        elif local == "si":
            strings.append("".join(parts))

    def data(text: str) -> None:
        if state["in_t"]:
            parts.append(text)

    drain(parse_part(open_part(path), start, end, data, plain=True))
    return strings


def _has_ended(ends: list[str], name: str, since: int = 0) -> bool:
    """An element `name` (maybe prefixed) ended at or after index `since` of `ends`."""
    return any(tag == name or tag.rpartition(":")[2] == name for tag in ends[since:])


def _read_date_styles(open_part: Callable[[str], IO[bytes]], path: str) -> set[str]:
    """Indexes of cell styles whose number format is a date or time."""
    custom_dates: set[int] = set()
    styles: list[int] = []
    where = {"cell_xfs": False}

    def start(tag: str, attrs: dict[str, str]) -> None:
        local = local_name(tag)
        if local == "numFmt":
            code = re.sub(r'"[^"]*"|\[[^\]]*\]|\\.', "", attrs.get("formatCode", ""))
            if re.search(r"[dmyhs]", code, re.IGNORECASE):
                custom_dates.add(int(attrs.get("numFmtId", "0")))
        elif local == "cellXfs":
            where["cell_xfs"] = True
        elif local == "xf" and where["cell_xfs"]:
            styles.append(int(attrs.get("numFmtId", "0")))

    def end(tag: str) -> None:
        if local_name(tag) == "cellXfs":
            where["cell_xfs"] = False

    drain(parse_part(open_part(path), start, end))
    dates = _BUILTIN_DATE_FORMATS | custom_dates
    return {str(index) for index, fmt in enumerate(styles) if fmt in dates}


class _SheetParser:
    """expat callbacks for <sheetData>; completed rows wait in `_ready` until `done()`.

    Speed: expat calls back per element, four to seven times per cell. Only `start` and
    `data` are Python; the end handler is `self._ends.append` (C), so an element's end costs
    no Python call. A cell is finished when the next cell or row starts (or the part ends),
    and "is this element still open?" is answered from the end tags recorded since it began.
    """

    def __init__(
        self, shared: list[str], date_styles: set[str], date1904: bool, limits: ReadLimits
    ) -> None:
        self._shared = shared
        self._date_styles = date_styles
        self._epoch = datetime(1904, 1, 1) if date1904 else datetime(1899, 12, 30)  # noqa: DTZ001
        self._max_columns = limits.max_columns
        self._ready: list[tuple[int, list[str]]] = []
        self._ends: list[str] = []  # end tags since the current cell or row began
        self.end = self._ends.append
        self._row = 0
        self._cells: list[str] = []  # the current row; column n is at n - 1
        self._is_cell_open = False
        self._column = 0
        self._type = "n"
        self._style = "0"
        self._formula = False
        self._text: list[str] = []
        self._value_at = -1  # len(_ends) when a <v>/<t> began; -1 outside one
        self._phonetic_at = -1  # len(_ends) when an <rPh> began; -1 outside one

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "c":  # inlined: this runs for every cell
            if self._is_cell_open:
                self._finish_cell()
            self._is_cell_open = True
            self._ends.clear()
            self._value_at = self._phonetic_at = -1
            ref = attrs.get("r")
            if ref:
                letters = ref.rstrip("0123456789")
                column = _COLUMNS.get(letters)
                self._column = column if column is not None else _column_index(letters)
            else:
                self._column += 1
            self._type = attrs.get("t", "n")
            self._style = attrs.get("s", "0")
            self._formula = False
            self._text = []
        elif tag == "is":
            pass
        elif tag == "t" or tag == "v":
            if not self._ends and self._phonetic_at < 0:  # nothing ended since the cell began
                self._value_at = 0 if self._is_cell_open else -1
            else:
                self._start_value()
        elif tag == "row":
            self._start_row(attrs)
        elif tag == "f":
            if self._is_cell_open and not _has_ended(self._ends, "c"):
                self._formula = True
        elif tag == "rPh":
            self._phonetic_at = len(self._ends)
        elif ":" in tag:  # prefixed elements (<x:c>) from some generators
            self.start(tag.rpartition(":")[2], attrs)

    def data(self, text: str) -> None:
        if self._value_at == len(self._ends):  # no element ended since <v>/<t> began
            self._text.append(text)

    def done(self) -> list[tuple[int, list[str]]]:
        if len(self._ends) > _MAX_ENDS:
            self._forget_ends()
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[tuple[int, list[str]]]:
        """The part ended: the last cell and row have no successor to finish them."""
        self._finish_row()
        return self.done()

    def _start_value(self) -> None:
        if self._phonetic_at >= 0 and not _has_ended(self._ends, "rPh", self._phonetic_at):
            return  # phonetic guide text is not part of the value
        self._phonetic_at = -1
        if self._is_cell_open and not _has_ended(self._ends, "c"):
            self._value_at = len(self._ends)

    def _forget_ends(self) -> None:
        """Bound memory when much markup follows the last cell (or fills one): settle what
        the recorded end tags say, then drop them."""
        ends = self._ends
        if self._is_cell_open and _has_ended(ends, "c"):
            self._finish_cell()
        if self._phonetic_at >= 0:
            self._phonetic_at = -1 if _has_ended(ends, "rPh", self._phonetic_at) else 0
        self._value_at = 0 if self._value_at == len(ends) else -1
        ends.clear()

    def _start_row(self, attrs: dict[str, str]) -> None:
        self._finish_row()
        number = attrs.get("r")
        self._row = int(number) if number else self._row + 1
        self._column = 0

    def _finish_row(self) -> None:
        if self._is_cell_open:
            self._finish_cell()
        self._ends.clear()
        self._value_at = self._phonetic_at = -1
        if self._cells:
            self._ready.append((self._row, self._cells))
            self._cells = []

    def _finish_cell(self) -> None:
        self._is_cell_open = False
        raw = "".join(self._text)
        if not raw and not self._formula:
            return  # a styled empty cell
        if self._column > self._max_columns:
            raise SpreadsheetError(
                f"row {self._row} has a value in column {self._column}; the limit is "
                f"{self._max_columns} columns. Remove columns Roster does not need."
            )
        value = self._convert(raw)
        if self._formula:
            value = FormulaCell(value)
        cells, column = self._cells, self._column
        if column > len(cells):
            cells.extend([""] * (column - len(cells) - 1))
            cells.append(value)
        else:  # out of order, or a column written twice: the last value wins
            cells[column - 1] = value

    def _convert(self, raw: str) -> str:
        kind = self._type
        if kind == "s":
            try:
                return self._shared[int(raw)]
            except (ValueError, IndexError) as exc:
                raise SpreadsheetError(
                    f"the workbook is damaged: row {self._row} points at a missing shared string."
                ) from exc
        if kind == "b":
            return "true" if raw == "1" else "false"
        if kind != "n":  # inlineStr, str (formula text), e (error), d (ISO date)
            return raw
        try:
            number = float(raw)
        except ValueError:
            return raw
        if self._style in self._date_styles:
            try:
                moment = self._epoch + timedelta(days=number)
            except OverflowError:
                return raw
            return moment.date().isoformat() if number.is_integer() else moment.isoformat()
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return repr(number)


def _column_index(letters: str) -> int:
    if not letters:
        raise SpreadsheetError("the workbook is damaged: a cell reference has no column.")
    index = 0
    for ch in letters.upper():
        if not "A" <= ch <= "Z":
            raise SpreadsheetError(f"the workbook is damaged: bad cell reference {letters!r}.")
        index = index * 26 + ord(ch) - 64
    return index


_COLUMNS = {column_letter(i): i + 1 for i in range(702)}  # A..ZZ

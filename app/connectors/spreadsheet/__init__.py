"""Spreadsheet connector: recipients from CSV and XLSX files an operator uploads."""

from app.connectors.spreadsheet.errors import SpreadsheetError
from app.connectors.spreadsheet.reader import SpreadsheetStream, open_spreadsheet, read_spreadsheet
from app.connectors.spreadsheet.results import (
    DEFAULT_LIMITS,
    ReadLimits,
    RowError,
    SheetReadResult,
    SheetRow,
)
from app.connectors.spreadsheet.template import write_template

__all__ = [
    "DEFAULT_LIMITS",
    "ReadLimits",
    "RowError",
    "SheetReadResult",
    "SheetRow",
    "SpreadsheetError",
    "SpreadsheetStream",
    "open_spreadsheet",
    "read_spreadsheet",
    "write_template",
]

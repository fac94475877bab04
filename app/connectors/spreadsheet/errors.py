"""The one exception a spreadsheet file raises when it cannot be read at all.

Row-level problems are not exceptions: they are `RowError` values reported with the good rows.
"""

from __future__ import annotations

from app.errors import InvalidInput


class SpreadsheetError(InvalidInput):
    """The whole file is refused (422); `message` tells the operator what to change in it."""

"""CSV as Excel and LibreOffice write it, read record by record from a seekable binary stream."""

from __future__ import annotations

import codecs
import csv
import io
import logging
from collections.abc import Generator
from typing import IO

from app.connectors.spreadsheet.errors import SpreadsheetError

logger = logging.getLogger(__name__)

DELIMITERS = (",", ";", "\t", "|")
_SNIFF_CHARS = 64 * 1024


def detect_encoding(head: bytes) -> str:
    """BOM first: Excel's "Unicode text" is UTF-16LE with a BOM; "CSV UTF-8" has a UTF-8 BOM."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"


def detect_delimiter(sample: str) -> str:
    """The candidate seen most often in the header line; a one-column file gets a comma."""
    header = _first_record(sample)
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])  # ties keep the earlier candidate
    return best if counts[best] else ","


def _first_record(sample: str) -> str:
    """The first record, outside quotes; quoted header cells may hold delimiters or newlines."""
    out: list[str] = []
    quoted = False
    for ch in sample:
        if ch == '"':
            quoted = not quoted
            continue
        if not quoted and ch in "\r\n":
            if out:
                break
            continue
        if not quoted:
            out.append(ch)
    return "".join(out)


def iter_csv_records(stream: IO[bytes]) -> Generator[tuple[int, list[str]], None, None]:
    """Yield (row number as a spreadsheet shows it, cells); a quoted newline stays in one row."""
    head = stream.read(4)
    stream.seek(0)
    encoding = detect_encoding(head)
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    row = 0
    try:
        delimiter = detect_delimiter(text.read(_SNIFF_CHARS))
        text.seek(0)
        logger.debug("csv dialect: encoding=%s delimiter=%r", encoding, delimiter)
        for row, cells in enumerate(csv.reader(text, delimiter=delimiter), start=1):
            yield row, cells
    except UnicodeDecodeError as exc:
        raise SpreadsheetError(
            f"the file is not UTF-8 text (near row {row + 1}). In Excel use Save As "
            "'CSV UTF-8 (Comma delimited)'; in LibreOffice choose the character set 'Unicode "
            "(UTF-8)'."
        ) from exc
    except csv.Error as exc:
        raise SpreadsheetError(f"row {row + 1} cannot be read as CSV: {exc}") from exc
    finally:
        text.detach()

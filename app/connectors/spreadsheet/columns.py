"""Which file column feeds which recipient field; header names are matched loosely on purpose.

Operators paste exports from Exchange, Google Admin and HR tools, so headers are compared with
case, spaces and punctuation removed ("E-Mail Address" == "emailaddress").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from app.connectors.spreadsheet.errors import SpreadsheetError


class Field(StrEnum):
    EMAIL = "email"
    DISPLAY_NAME = "display name"
    ALIASES = "aliases"
    ENABLED = "enabled"
    KIND = "kind"
    GROUPS = "groups"
    PERMISSIONS = "permissions"


# Shown to the operator, in this order, when a file has no email column.
SYNONYMS: dict[Field, tuple[str, ...]] = {
    Field.EMAIL: ("email", "e-mail", "mail", "email address", "primary smtp address"),
    Field.DISPLAY_NAME: ("display name", "name", "full name"),
    # Exchange's "EmailAddresses" is the proxy list; its "Alias" is a nickname, not an address.
    Field.ALIASES: ("aliases", "proxy addresses", "email addresses", "other addresses"),
    Field.ENABLED: ("enabled", "status", "account enabled"),
    Field.KIND: ("kind", "type", "recipient type", "recipient type details"),
    Field.GROUPS: ("groups", "group", "member of"),
    Field.PERMISSIONS: ("permissions", "permission", "role", "roles"),
}

_PASSWORD_KEYS = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "secret"})


def header_key(header: str) -> str:
    """Header with case, spaces and punctuation removed, for matching."""
    return re.sub(r"[\W_]+", "", header.casefold())


_BY_KEY = {header_key(name): f for f, names in SYNONYMS.items() for name in names}


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Positions of known fields and of attribute columns in the header row."""

    headers: tuple[str, ...]
    fields: dict[Field, int]
    attributes: tuple[tuple[int, str], ...]  # (position, attribute name as headed)

    def header_of(self, position: int) -> str:
        if position < len(self.headers) and self.headers[position]:
            return self.headers[position]
        return f"column {column_letter(position)}"


def column_letter(position: int) -> str:
    """0 -> A, 26 -> AA: how spreadsheets name a column with no header."""
    letters = ""
    n = position + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def map_columns(raw_headers: list[str], *, max_columns: int) -> ColumnMap:
    """Match the header row, refusing files Roster must not or cannot import."""
    headers = [h.strip() for h in raw_headers]
    while headers and not headers[-1]:
        headers.pop()
    if len(headers) > max_columns:
        raise SpreadsheetError(
            f"the header row has {len(headers)} columns; the limit is {max_columns}. "
            "Remove columns Roster does not need."
        )
    for header in headers:
        key = header_key(header)
        if key in _PASSWORD_KEYS or "password" in key:
            raise SpreadsheetError(
                f"the file has a password column ({header!r}). Roster never stores passwords; "
                "remove the column and import again."
            )
    fields: dict[Field, int] = {}
    attributes: list[tuple[int, str]] = []
    seen_attributes: dict[str, str] = {}
    for position, header in enumerate(headers):
        if not header:
            continue
        known = _BY_KEY.get(header_key(header))
        if known is not None:
            if known in fields:
                first = headers[fields[known]]
                raise SpreadsheetError(
                    f"the columns {first!r} and {header!r} both mean {known.value}; keep one."
                )
            fields[known] = position
            continue
        folded = header.casefold()
        if folded in seen_attributes:
            raise SpreadsheetError(
                f"two columns are headed {seen_attributes[folded]!r}; give each column its "
                "own name."
            )
        seen_attributes[folded] = header
        attributes.append((position, header))
    if Field.EMAIL not in fields:
        found = ", ".join(repr(h) for h in headers if h) or "none"
        accepted = ", ".join(repr(n) for n in SYNONYMS[Field.EMAIL])
        raise SpreadsheetError(
            f"no email column. Headers found in the first row: {found}. "
            f"Name the address column one of: {accepted} (case does not matter)."
        )
    return ColumnMap(headers=tuple(headers), fields=fields, attributes=tuple(attributes))

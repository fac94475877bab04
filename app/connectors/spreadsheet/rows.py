"""One raw row of cells to a SheetRow or the reasons it was refused."""

from __future__ import annotations

from dataclasses import dataclass

from app.connectors.base import RecipientKind
from app.connectors.spreadsheet.cells import (
    CellError,
    FormulaCell,
    looks_like_formula,
    parse_address,
    parse_address_list,
    parse_enabled,
    parse_kind,
    parse_text_list,
    quote,
)
from app.connectors.spreadsheet.columns import ColumnMap, Field
from app.connectors.spreadsheet.group_entries import NO_GROUPS, GroupEntries, parse_group_entries
from app.connectors.spreadsheet.results import ReadLimits, RowError, SheetRow

_LIST_FIELDS = frozenset({Field.ALIASES, Field.GROUPS, Field.PERMISSIONS})
_MAX_REUSED = 50_000  # distinct values remembered per file; bounds the caches
_FORMULA_START = frozenset("=+-@")  # `looks_like_formula` is False for any other first character


@dataclass(slots=True)
class BuiltRow:
    """A checked row; `addresses` (email first, then aliases from `alias_from`) feed the
    duplicate check even when the row is refused, so both rows of a clash get reported."""

    row: SheetRow | None
    errors: list[RowError]
    addresses: tuple[str, ...]
    alias_from: int


class RowBuilder:
    """Checks one row at a time; addresses repeated across rows are tracked by the reader.

    Runs once per row of files with 500,000 rows: field positions and headers are looked up
    once here, not per row.
    """

    def __init__(self, columns: ColumnMap, limits: ReadLimits) -> None:
        self.columns = columns
        self._limits = limits
        self._group_lists: dict[str, GroupEntries] = {}
        self._values: dict[str, str] = {}
        self._order = {columns.header_of(p): p for p in range(len(columns.headers))}
        # Per position: the longest value allowed, 0 for a column without a header.
        self._max_chars = [0] * len(columns.headers)
        for position, _ in columns.attributes:
            self._max_chars[position] = limits.max_attribute_chars
        for field, position in columns.fields.items():
            is_list = field in _LIST_FIELDS
            self._max_chars[position] = limits.max_list_chars if is_list else limits.max_cell_chars
        # -1 for an absent column: never a key of a row's values, so it reads as empty.
        self._position = {field: columns.fields.get(field, -1) for field in Field}
        self._header = {field: columns.header_of(p) for field, p in columns.fields.items()}

    def build(self, number: int, raw: list[str]) -> BuiltRow:
        """Check every cell; a row with any error is refused but its addresses still count."""
        errors: list[RowError] = []
        values: dict[int, str] = {}
        max_chars = self._max_chars
        width = len(max_chars)
        unheaded: list[int] = []
        for position, cell in enumerate(raw):
            value = cell.strip()
            is_formula = isinstance(cell, FormulaCell) or (
                value[:1] in _FORMULA_START and looks_like_formula(value)
            )
            if not value and not is_formula:
                continue
            limit = max_chars[position] if position < width else 0
            if not limit:
                unheaded.append(position)
            elif is_formula:
                errors.append(
                    self._error(
                        number,
                        position,
                        f"{quote(value)} is a formula; Roster refuses formulas (they run when "
                        "the data is opened in a spreadsheet). Enter the value as plain text.",
                    )
                )
            elif len(value) > limit:
                errors.append(
                    self._error(
                        number, position, f"{len(value):,} characters; the limit is {limit:,}"
                    )
                )
            else:
                values[position] = value
        if unheaded:
            more = f" (and {len(unheaded) - 1} more)" if len(unheaded) > 1 else ""
            errors.append(
                self._error(number, unheaded[0], f"value in a column with no header{more}")
            )
        built = self._fields(number, values, errors)
        if len(errors) > 1:
            errors.sort(key=lambda e: self._order.get(e.column or "", len(self._order)))
        return built

    def _groups(self, value: str) -> GroupEntries:
        """Group lists repeat down a sheet: parse each distinct one once and share the tuple."""
        groups = self._group_lists.get(value)
        if groups is None:
            groups = parse_group_entries(value)
            if len(self._group_lists) < _MAX_REUSED:
                self._group_lists[value] = groups
        return groups

    def _reuse(self, value: str) -> str:
        """One string object per repeated attribute value ("Sales" x 100,000 rows)."""
        if len(self._values) < _MAX_REUSED:
            return self._values.setdefault(value, value)
        return self._values.get(value, value)

    def _error(self, number: int, position: int, reason: str) -> RowError:
        return RowError(number, self.columns.header_of(position), reason)

    def _fields(self, number: int, values: dict[int, str], errors: list[RowError]) -> BuiltRow:
        position = self._position
        header = self._header

        def refuse(field: Field, reason: str) -> None:
            errors.append(RowError(number, header[field], reason))

        email = ""
        email_cell = values.get(position[Field.EMAIL], "")
        if not any(e.column == header[Field.EMAIL] for e in errors):
            if not email_cell:
                refuse(Field.EMAIL, "the email address is missing")
            else:
                try:
                    email = parse_address(email_cell)
                except CellError as exc:
                    refuse(Field.EMAIL, str(exc))
        aliases: tuple[str, ...] = ()
        groups = NO_GROUPS
        enabled = True
        kind = RecipientKind.USER  # what an empty kind cell means
        try:
            aliases = parse_address_list(values.get(position[Field.ALIASES], ""))
            if email in aliases:
                aliases = tuple(a for a in aliases if a != email)
        except CellError as exc:
            refuse(Field.ALIASES, str(exc))
        try:
            groups = self._groups(values.get(position[Field.GROUPS], ""))
        except CellError as exc:
            refuse(Field.GROUPS, str(exc))
        if email and email in groups.addresses:
            refuse(Field.GROUPS, f"{email} cannot be a member of itself")
        try:
            enabled = parse_enabled(values.get(position[Field.ENABLED], ""))
        except CellError as exc:
            refuse(Field.ENABLED, str(exc))
        try:
            kind = parse_kind(values.get(position[Field.KIND], ""))
        except CellError as exc:
            refuse(Field.KIND, str(exc))
        addresses = (email, *aliases) if email else aliases
        if errors:
            return BuiltRow(None, errors, addresses, alias_from=1 if email else 0)
        row = SheetRow(
            row=number,
            email=email,
            display_name=values.get(position[Field.DISPLAY_NAME]) or None,
            aliases=aliases,
            enabled=enabled,
            kind=kind,
            groups=groups.addresses,
            group_names=groups.names,
            group_labels=groups.labels,
            permissions=parse_text_list(values.get(position[Field.PERMISSIONS], "")),
            attributes={
                name: self._reuse(values[at])
                for at, name in self.columns.attributes
                if at in values
            },
        )
        return BuiltRow(row, errors, addresses, alias_from=1)

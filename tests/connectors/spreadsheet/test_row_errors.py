"""Bad rows are reported with the row number a spreadsheet shows, the column and a reason."""

from __future__ import annotations

import pytest

from app.connectors.spreadsheet import (
    ReadLimits,
    RowError,
    SheetRow,
    open_spreadsheet,
    read_spreadsheet,
)
from tests.connectors.spreadsheet.files import csv_bytes


def errors_of(rows: list[list[str]], **kwargs: object) -> list[tuple[int, str | None, str]]:
    result = read_spreadsheet(csv_bytes(rows), filename="people.csv", **kwargs)  # type: ignore[arg-type]
    return [(e.row, e.column, e.reason) for e in result.errors]


def test_bad_rows_are_left_out_and_good_rows_kept() -> None:
    result = read_spreadsheet(
        csv_bytes(
            [
                ["Email", "Enabled"],
                ["good@example.com", "yes"],
                ["not-an-address", "yes"],
                ["also.good@example.com", "no"],
            ]
        ),
        filename="people.csv",
    )
    assert [r.email for r in result.rows] == ["good@example.com", "also.good@example.com"]
    assert result.errors == [
        RowError(3, "Email", "'not-an-address' is not a valid address: must contain exactly one @")
    ]
    assert result.error_count == 1
    assert not result.ok
    assert result.data_rows == 3


def test_missing_email_is_reported() -> None:
    assert errors_of([["email", "name"], ["", "Nobody"]]) == [
        (2, "email", "the email address is missing")
    ]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("a b@example.com", "contains a space or control character"),
        ("@example.com", "nothing before the @"),
        ("a@", "no domain after the @"),
        ("a@localhost", "the domain 'localhost' is not a full domain name"),
        ("a@@example.com", "must contain exactly one @"),
        ("a@exa_mple.com", "the domain 'exa_mple.com' is not valid"),
        ("x" * 65 + "@example.com", "the part before the @ is longer than 64 characters"),
        ("a@" + "b" * 250 + ".com", "longer than 254 characters"),
    ],
)
def test_malformed_email_is_reported_with_the_reason(address: str, reason: str) -> None:
    [(row, column, message)] = errors_of([["email"], [address]])
    assert (row, column) == (2, "email")
    assert message.endswith(reason)


def test_malformed_alias_and_group_are_reported_in_their_columns() -> None:
    assert errors_of(
        [["email", "aliases", "groups"], ["a@example.com", "b@example.com; bad alias", "staff@"]]
    ) == [
        (
            2,
            "aliases",
            "'bad alias' is not a valid address: contains a space or control character",
        ),
        (
            2,
            "groups",
            "'staff@' is not a valid address: no domain after the @; write a group as its "
            "address, as Name <address>, or as a name without @",
        ),
    ]


def test_the_same_address_twice_names_both_rows() -> None:
    rows = [
        ["email", "aliases"],
        ["a@example.com", ""],
        ["b@example.com", "info@example.com"],
        ["A@Example.com", ""],
        ["info@example.com", ""],
    ]
    result = read_spreadsheet(csv_bytes(rows), filename="people.csv")
    assert [(e.row, e.column, e.reason) for e in result.errors] == [
        (2, "email", "a@example.com is also on row 4; each address may appear once in the file"),
        (
            3,
            "aliases",
            "info@example.com is also on row 5; each address may appear once in the file",
        ),
        (4, "email", "a@example.com is also on row 2; each address may appear once in the file"),
        (5, "email", "info@example.com is also on row 3; each address may appear once in the file"),
    ]
    assert result.rows == []


def test_streaming_reports_a_repeat_against_a_row_already_yielded() -> None:
    data = csv_bytes([["email"], ["a@example.com"], ["a@example.com"]])
    with open_spreadsheet(data, filename="x.csv") as stream:
        items = list(stream)
    assert isinstance(items[0], SheetRow)
    assert {(e.row, e.column) for e in items[1:] if isinstance(e, RowError)} == {
        (2, "email"),
        (3, "email"),
    }


def test_an_alias_equal_to_its_own_email_is_ignored() -> None:
    result = read_spreadsheet(
        csv_bytes([["email", "aliases"], ["a@example.com", "SMTP:A@example.com"]]), filename="x.csv"
    )
    assert result.errors == []
    assert result.rows[0].aliases == ()


def test_bad_enabled_and_kind_values_list_what_is_accepted() -> None:
    [enabled, kind] = errors_of([["email", "enabled", "kind"], ["a@example.com", "maybe", "robot"]])
    assert enabled[:2] == (2, "enabled")
    assert enabled[2].startswith("'maybe' is not a valid value; use true/false, yes/no")
    assert kind[:2] == (2, "kind")
    assert kind[2].startswith("'robot' is not a recipient kind; use one of: user, shared mailbox")


def test_a_group_cannot_be_its_own_member() -> None:
    assert errors_of([["email", "groups"], ["g@example.com", "g@example.com"]]) == [
        (2, "groups", "g@example.com cannot be a member of itself")
    ]


@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        '=HYPERLINK("http://evil.example","x")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "  =1+1",
    ],
)
def test_formulas_are_refused_in_any_column(value: str) -> None:
    [(row, column, reason)] = errors_of([["email", "department"], ["a@example.com", value]])
    assert (row, column) == (2, "department")
    assert "is a formula; Roster refuses formulas" in reason


def test_a_formula_in_the_email_column_is_reported_as_a_formula() -> None:
    [(_, column, reason)] = errors_of([["email"], ['=A1&"@example.com"']])
    assert column == "email"
    assert "formula" in reason


def test_long_cells_are_refused() -> None:
    limits = ReadLimits()
    rows = [
        ["email", "display name", "notes"],
        ["a@example.com", "x" * (limits.max_cell_chars + 1), "ok"],
        ["b@example.com", "ok", "y" * (limits.max_attribute_chars + 1)],
        ["c@example.com", "x" * limits.max_cell_chars, "y" * limits.max_attribute_chars],
    ]
    assert errors_of(rows) == [
        (2, "display name", "1,025 characters; the limit is 1,024"),
        (3, "notes", "4,097 characters; the limit is 4,096"),
    ]


def test_values_beyond_the_header_are_reported() -> None:
    assert errors_of([["email", "", "dept"], ["a@example.com", "stray", "x", "more"]]) == [
        (2, "column B", "value in a column with no header (and 1 more)")
    ]


def test_every_bad_cell_of_a_row_is_reported_in_column_order() -> None:
    rows = [["email", "enabled", "kind", "notes"], ["bad", "maybe", "robot", "=1"]]
    assert [c for _, c, _ in errors_of(rows)] == ["email", "enabled", "kind", "notes"]


def test_a_row_with_thousands_of_stray_values_gets_one_error() -> None:
    [(row, column, reason)] = errors_of([["email"], ["a@example.com", *["x"] * 5000]])
    assert (row, column, reason) == (
        2,
        "column B",
        "value in a column with no header (and 4999 more)",
    )


def test_row_errors_beyond_the_limit_are_counted_not_kept() -> None:
    rows = [["email"], *(["bad"] for _ in range(30))]
    result = read_spreadsheet(csv_bytes(rows), filename="x.csv", limits=ReadLimits(max_errors=10))
    assert len(result.errors) == 10
    assert result.error_count == 30


def test_errors_serialize_for_the_import_report() -> None:
    assert RowError(3, "email", "bad").as_dict() == {"row": 3, "column": "email", "reason": "bad"}

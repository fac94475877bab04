"""How one groups cell splits into addresses, `Name <address>` entries and names (no database)."""

from __future__ import annotations

import pytest

from app.connectors.spreadsheet.cells import CellError
from app.connectors.spreadsheet.group_entries import (
    GroupEntries,
    name_key,
    parse_group_entries,
)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("Sales Team", GroupEntries((), ("Sales Team",), ())),
        ("Sales Team; All staff", GroupEntries((), ("Sales Team", "All staff"), ())),
        ("Sales Team, sales team;SALES  TEAM", GroupEntries((), ("Sales Team",), ())),
        ("  Sales   Team  ", GroupEntries((), ("Sales Team",), ())),
        ("Staff@Contoso.com; IT", GroupEntries(("staff@contoso.com",), ("IT",), ())),
        (
            'Sales <sales@contoso.com>; "Front desk" <desk@contoso.com>',
            GroupEntries(
                ("sales@contoso.com", "desk@contoso.com"),
                (),
                (("sales@contoso.com", "Sales"), ("desk@contoso.com", "Front desk")),
            ),
        ),
        ("<sales@contoso.com>", GroupEntries(("sales@contoso.com",), (), ())),
        ("SMTP:staff@contoso.com", GroupEntries(("staff@contoso.com",), (), ())),
        ("Team: Sales", GroupEntries((), ("Team: Sales",), ())),
        (
            "X500:/o=ExchangeLabs/ou=Exchange Administrative Group, x/cn=Recipients; IT",
            GroupEntries((), ("IT",), ()),
        ),
        (";IT;; , ;", GroupEntries((), ("IT",), ())),
        ("Zoë's Bücher-Club", GroupEntries((), ("Zoë's Bücher-Club",), ())),
    ],
    ids=[
        "name",
        "two-names",
        "one-name-three-spellings",
        "spaces",
        "address-and-name",
        "name-and-address",
        "address-in-brackets",
        "smtp-prefix",
        "colon-in-a-name",
        "x500-skipped",
        "empty-entries",
        "unicode-name",
    ],
)
def test_a_groups_cell_is_read_as_people_write_it(cell: str, expected: GroupEntries) -> None:
    assert parse_group_entries(cell) == expected


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("Sales <sales>", "'sales' is not an address"),
        ("Sales <sales@contoso.com", "is not a group entry"),
        ("Sales > IT", "is not a group entry"),
        ("staff@", "no domain after the @; write a group as its address, as Name <address>"),
        ("IT; =cmd|' /C calc'!A0", "is a formula"),
        ("A" * 201, "has 201 characters; the limit is 200"),
        ("Sales\u200bTeam", "contains a control character"),
    ],
    ids=["no-at", "unclosed", "stray-bracket", "bad-address", "formula", "long", "control"],
)
def test_a_bad_groups_entry_is_refused_with_a_reason(cell: str, reason: str) -> None:
    with pytest.raises(CellError, match=reason.replace("(", r"\(").replace("|", r"\|")):
        parse_group_entries(cell)


def test_names_compare_without_case_or_repeated_spaces() -> None:
    assert name_key("Sales  Team") == name_key("sales team") == name_key("SALES TEAM")
    assert name_key("Sales Team") != name_key("Sales Teams")

"""Group names in the groups column, as people write them, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.spreadsheet import read_spreadsheet
from app.connectors.spreadsheet.importer import run_import
from app.connectors.spreadsheet.report import ImportMode, ImportOptions, ImportReport
from app.directory import groups as group_service
from app.directory import service
from app.directory.models import Address, Change, Membership, Recipient
from app.directory.records import ChangeSet, RecipientKind, SourceKind
from tests.connectors.spreadsheet.files import csv_bytes, xlsx_bytes
from tests.factories import make_connector, make_domain, make_recipient

Sessionmaker = async_sessionmaker[AsyncSession]
HEADER = ["email", "display name", "kind", "groups"]


async def run(
    sessionmaker: Sessionmaker, rows: Sequence[Sequence[str]], *, xlsx: bool = False, **opts: Any
) -> ImportReport:
    data = xlsx_bytes({"People": rows}) if xlsx else csv_bytes(rows)
    name = "people.xlsx" if xlsx else "people.csv"
    sheet = read_spreadsheet(data, filename=name)
    async with sessionmaker.begin() as session:
        return await run_import(session, sheet, filename=name, options=ImportOptions(**opts))


async def groups_named(sessionmaker: Sessionmaker, name: str) -> list[Recipient]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Recipient).where(
                Recipient.kind == "group",
                Recipient.display_name == name,
                Recipient.deleted_at.is_(None),
            )
        )
        return list(rows)


async def the_group(sessionmaker: Sessionmaker, name: str) -> Recipient:
    (group,) = await groups_named(sessionmaker, name)
    return group


async def member_emails(sessionmaker: Sessionmaker, group: Recipient) -> set[str]:
    async with sessionmaker() as session:
        found = await group_service.members(session, group, transitive=False)
        return {m.external_id for m in found}


async def addresses_of(sessionmaker: Sessionmaker, group: Recipient) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Address.address).where(Address.recipient_id == group.id)
        )
        return list(rows)


async def count(sessionmaker: Sessionmaker, model: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def contoso(sessionmaker: Sessionmaker) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")


NAMES = [
    HEADER,
    ["alice@contoso.com", "Alice", "", "Sales Team; All staff"],
    ["bob@contoso.com", "Bob", "", "all staff, IT"],
]


@pytest.mark.parametrize("xlsx", [False, True], ids=["csv", "xlsx"])
async def test_a_sheet_with_group_names_imports_and_creates_those_groups(
    sessionmaker: Sessionmaker, contoso: None, xlsx: bool
) -> None:
    report = await run(sessionmaker, NAMES, xlsx=xlsx)
    assert report.errors == [] and report.status.value == "applied"
    assert report.groups_created == ["All staff", "IT", "Sales Team"]
    assert report.adds == 5
    staff = await the_group(sessionmaker, "All staff")  # "all staff" is the same group
    assert (staff.kind, staff.source) == ("group", "spreadsheet")
    assert await member_emails(sessionmaker, staff) == {"alice@contoso.com", "bob@contoso.com"}
    sales = await the_group(sessionmaker, "Sales Team")
    assert await member_emails(sessionmaker, sales) == {"alice@contoso.com"}


async def test_a_group_created_from_a_name_owns_no_address(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    await run(sessionmaker, NAMES)
    sales = await the_group(sessionmaker, "Sales Team")
    assert await addresses_of(sessionmaker, sales) == []
    # Every address the tenant accepts belongs to a row of the file, none to a named group.
    async with sessionmaker() as session:
        owners = set(await session.scalars(select(Address.recipient_id)))
        people = set(await session.scalars(select(Recipient.id).where(Recipient.kind == "user")))
    assert owners == people


async def test_a_dry_run_lists_the_groups_it_would_create_and_writes_nothing(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    report = await run(sessionmaker, NAMES, dry_run=True)
    assert report.groups_created == ["All staff", "IT", "Sales Team"]
    assert report.summary()["groups_created"] == ["All staff", "IT", "Sales Team"]
    new_groups = [r.as_dict() for r in report.diff.adds if r.kind == "group"]
    assert new_groups == [
        {"row": None, "email": None, "kind": "group", "name": "All staff"},
        {"row": None, "email": None, "kind": "group", "name": "IT"},
        {"row": None, "email": None, "kind": "group", "name": "Sales Team"},
    ]
    assert "groups to create: All staff; IT; Sales Team" in report.message
    assert await count(sessionmaker, Recipient) == 0
    assert await count(sessionmaker, Membership) == 0


async def test_importing_group_names_again_changes_nothing(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    await run(sessionmaker, NAMES, mode=ImportMode.REPLACE)
    changes = await count(sessionmaker, Change)
    again = await run(sessionmaker, NAMES, mode=ImportMode.REPLACE)
    assert (again.adds, again.updates, again.removes, again.unchanged) == (0, 0, 0, 2)
    assert again.groups_created == []
    assert len(await groups_named(sessionmaker, "All staff")) == 1
    assert await count(sessionmaker, Change) == changes


async def test_a_name_adds_the_member_to_the_manual_group_of_that_name_whatever_its_case(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        manual = await make_connector(session, SourceKind.MANUAL)
        await make_recipient(
            session,
            manual,
            external_id="m-1",
            addresses=["sales@contoso.com"],
            kind=RecipientKind.GROUP,
            display_name="Sales Team",
        )
    report = await run(sessionmaker, [HEADER, ["carol@contoso.com", "Carol", "", "sales  TEAM"]])
    assert report.errors == [] and report.groups_created == []
    sales = await the_group(sessionmaker, "Sales Team")
    assert sales.source == "manual"
    assert await member_emails(sessionmaker, sales) == {"carol@contoso.com"}
    assert await addresses_of(sessionmaker, sales) == ["sales@contoso.com"]
    again = await run(sessionmaker, [HEADER, ["carol@contoso.com", "Carol", "", "Sales Team"]])
    assert (again.adds, again.updates, again.unchanged) == (0, 0, 1)


async def test_a_name_adds_the_member_to_a_directory_group_and_directory_rounds_keep_it(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        ldap = await make_connector(session, SourceKind.LDAP, name="corp")
        await make_recipient(session, ldap, external_id="u-1", addresses=["dan@contoso.com"])
        await make_recipient(
            session,
            ldap,
            external_id="g-1",
            addresses=["eng@contoso.com"],
            kind=RecipientKind.GROUP,
            display_name="Engineering",
        )
        await service.apply(
            session,
            ChangeSet(member_sets={"g-1": ["u-1"]}),
            connector=service.ConnectorRef.of(ldap),
        )
    rows = [HEADER, ["erin@contoso.com", "Erin", "contact", "engineering"]]
    report = await run(sessionmaker, rows)
    assert report.errors == [] and report.groups_created == []
    eng = await the_group(sessionmaker, "Engineering")
    assert await member_emails(sessionmaker, eng) == {"u-1", "erin@contoso.com"}

    # The directory's next full round states its own member list; the sheet's member stays.
    async with sessionmaker.begin() as session:
        await service.apply(
            session,
            ChangeSet(member_sets={"g-1": ["u-1"]}),
            connector=service.ConnectorRef.of(ldap),
        )
    assert await member_emails(sessionmaker, eng) == {"u-1", "erin@contoso.com"}
    again = await run(sessionmaker, rows)
    assert (again.adds, again.updates, again.unchanged) == (0, 0, 1)


async def test_replace_takes_the_member_out_of_a_directory_group_the_row_no_longer_names(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        graph = await make_connector(session, SourceKind.GRAPH, name="entra")
        await make_recipient(
            session,
            graph,
            external_id="g-9",
            addresses=["eng@contoso.com"],
            kind=RecipientKind.GROUP,
            display_name="Engineering",
        )
    await run(sessionmaker, [HEADER, ["erin@contoso.com", "Erin", "", "Engineering"]])
    report = await run(
        sessionmaker, [HEADER, ["erin@contoso.com", "Erin", "", ""]], mode=ImportMode.REPLACE
    )
    assert [(r.email, r.fields) for r in report.diff.updates] == [("erin@contoso.com", ("groups",))]
    eng = await the_group(sessionmaker, "Engineering")
    assert await member_emails(sessionmaker, eng) == set()
    assert await addresses_of(sessionmaker, eng) == ["eng@contoso.com"]  # the group stays


async def test_a_group_address_of_a_directory_group_adds_the_member_too(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        graph = await make_connector(session, SourceKind.GRAPH, name="entra")
        await make_recipient(
            session,
            graph,
            external_id="g-2",
            addresses=["sales@contoso.com"],
            kind=RecipientKind.GROUP,
            display_name="Sales",
        )
        await make_recipient(session, graph, external_id="u-2", addresses=["gus@contoso.com"])
    report = await run(
        sessionmaker,
        [HEADER, ["hal@contoso.com", "Hal", "", "sales@contoso.com"],
         ["ivy@contoso.com", "Ivy", "", "gus@contoso.com"]],
    )  # fmt: skip
    assert [(e.row, e.column) for e in report.errors] == [(3, "groups")]
    assert "gus@contoso.com is a user" in report.errors[0].reason
    assert "not a group" in report.errors[0].reason
    partial = await run(sessionmaker, [HEADER, ["hal@contoso.com", "Hal", "", "sales@contoso.com"]])
    assert partial.errors == []
    sales = await the_group(sessionmaker, "Sales")
    assert sales.source == "graph"
    assert await member_emails(sessionmaker, sales) == {"hal@contoso.com"}


async def test_name_and_address_form_names_the_group_and_gives_a_new_group_its_name(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    rows = [
        HEADER,
        ["jo@contoso.com", "Jo", "", "Sales <Sales@Contoso.com>"],
        ["kim@contoso.com", "Kim", "", "sales"],  # the same group, by its name
    ]
    report = await run(sessionmaker, rows, dry_run=True)
    assert report.groups_created == ["Sales <sales@contoso.com>"]
    applied = await run(sessionmaker, rows)
    assert applied.errors == [] and applied.adds == 3
    sales = await the_group(sessionmaker, "Sales")
    assert await addresses_of(sessionmaker, sales) == ["sales@contoso.com"]
    assert await member_emails(sessionmaker, sales) == {"jo@contoso.com", "kim@contoso.com"}
    again = await run(sessionmaker, rows)
    assert (again.adds, again.updates, again.groups_created) == (0, 0, [])


async def test_a_group_row_of_the_file_is_found_by_its_display_name(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    rows = [
        HEADER,
        ["staff@contoso.com", "All staff", "group", ""],
        ["lee@contoso.com", "Lee", "", "ALL STAFF"],
    ]
    report = await run(sessionmaker, rows)
    assert report.errors == [] and report.groups_created == []
    staff = await the_group(sessionmaker, "All staff")
    assert staff.external_id == "staff@contoso.com"
    assert await member_emails(sessionmaker, staff) == {"lee@contoso.com"}


async def test_an_ambiguous_group_name_is_a_row_error_naming_both_groups(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        manual = await make_connector(session, SourceKind.MANUAL)
        graph = await make_connector(session, SourceKind.GRAPH, name="entra")
        for connector, ext, address in ((manual, "m-2", "support@contoso.com"),
                                        (graph, "g-3", "help@contoso.com")):  # fmt: skip
            await make_recipient(
                session,
                connector,
                external_id=ext,
                addresses=[address],
                kind=RecipientKind.GROUP,
                display_name="Support",
            )
    rows = [
        HEADER,
        ["max@contoso.com", "Max", "", "IT"],
        ["ned@contoso.com", "Ned", "", "IT; support"],
    ]
    report = await run(sessionmaker, rows)
    assert report.status.value == "rejected"
    assert [(e.row, e.column) for e in report.errors] == [(3, "groups")]
    reason = report.errors[0].reason
    assert "'support' is ambiguous" in reason
    assert "Support <support@contoso.com> (manual connector 'manual')" in reason
    assert "Support <help@contoso.com> (graph connector 'entra')" in reason
    assert await count(sessionmaker, Membership) == 0
    fixed = [*rows[:2], ["ned@contoso.com", "Ned", "", "IT; help@contoso.com"]]
    assert (await run(sessionmaker, fixed)).errors == []


async def test_empty_entries_between_separators_are_ignored(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    report = await run(sessionmaker, [HEADER, ["oz@contoso.com", "Oz", "", ";Sales;; ,IT;"]])
    assert report.errors == [] and report.groups_created == ["IT", "Sales"]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("Sales <sales>", "'sales' is not an address"),
        ("Sales <sales@contoso.com", "is not a group entry"),
        ("Sales Team sales@contoso.com", "is not a valid address"),
        ("IT; =HYPERLINK(1)", "is a formula"),
    ],
)
async def test_a_malformed_group_entry_is_a_clear_row_error(
    sessionmaker: Sessionmaker, contoso: None, cell: str, reason: str
) -> None:
    report = await run(sessionmaker, [HEADER, ["pat@contoso.com", "Pat", "", cell]])
    assert [(e.row, e.column) for e in report.errors] == [(2, "groups")]
    assert reason in report.errors[0].reason
    assert await count(sessionmaker, Recipient) == 0


async def test_replace_removes_a_named_group_no_row_names_any_more_and_merge_keeps_it(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    await run(sessionmaker, NAMES)
    without_it = [HEADER, NAMES[1], ["bob@contoso.com", "Bob", "", "all staff"]]
    merged = await run(sessionmaker, without_it, mode=ImportMode.MERGE)
    assert merged.removes == 0
    it = await the_group(sessionmaker, "IT")
    assert await member_emails(sessionmaker, it) == set()
    replaced = await run(sessionmaker, without_it, mode=ImportMode.REPLACE, dry_run=True)
    assert [r.as_dict() for r in replaced.diff.removes] == [
        {"row": None, "email": None, "kind": "group", "name": "IT"}
    ]
    await run(sessionmaker, without_it, mode=ImportMode.REPLACE)
    assert await groups_named(sessionmaker, "IT") == []
    assert len(await groups_named(sessionmaker, "Sales Team")) == 1


async def test_a_group_name_that_is_also_the_rows_own_name_is_refused(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    rows = [HEADER, ["team@contoso.com", "Team", "group", "team"]]
    report = await run(sessionmaker, rows)
    assert [(e.row, e.column) for e in report.errors] == [(2, "groups")]
    assert "cannot be a member of itself" in report.errors[0].reason


async def test_a_file_without_a_groups_column_leaves_members_of_other_sources_groups_alone(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        manual = await make_connector(session, SourceKind.MANUAL)
        await make_recipient(
            session,
            manual,
            external_id="m-3",
            addresses=["execs@contoso.com"],
            kind=RecipientKind.GROUP,
            display_name="Executives",
        )
    await run(sessionmaker, [HEADER, ["quinn@contoso.com", "Quinn", "", "Executives"]])
    execs = await the_group(sessionmaker, "Executives")
    assert await member_emails(sessionmaker, execs) == {"quinn@contoso.com"}
    no_groups = await run(sessionmaker, [["email", "display name"], ["quinn@contoso.com", "Q"]])
    assert [(r.email, r.fields) for r in no_groups.diff.updates] == [
        ("quinn@contoso.com", ("display name",))
    ]
    assert await member_emails(sessionmaker, execs) == {"quinn@contoso.com"}
    emptied = await run(sessionmaker, [HEADER, ["quinn@contoso.com", "Q", "", ""]])
    assert [(r.email, r.fields) for r in emptied.diff.updates] == [
        ("quinn@contoso.com", ("groups",))
    ]
    assert await member_emails(sessionmaker, execs) == set()

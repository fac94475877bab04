"""Importing into the mirror, on SQLite and PostgreSQL: diff, modes, guard, conflicts, groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.guard import GuardSettings
from app.connectors.runner import approve_deletions
from app.connectors.spreadsheet import read_spreadsheet
from app.connectors.spreadsheet.importer import get_report, run_import
from app.connectors.spreadsheet.report import ImportMode, ImportOptions, ImportReport
from app.directory import groups as group_service
from app.directory.models import Address, Change, Connector, Recipient
from app.directory.records import SourceKind
from app.errors import InvalidInput
from tests.connectors.spreadsheet.files import csv_bytes, xlsx_bytes
from tests.factories import make_connector, make_domain, make_recipient

Sessionmaker = async_sessionmaker[AsyncSession]
HEADER = ["email", "display name", "aliases", "kind", "groups", "department"]


async def run(
    sessionmaker: Sessionmaker,
    rows: Sequence[Sequence[str]],
    *,
    xlsx: bool = False,
    **options: Any,
) -> ImportReport:
    data = xlsx_bytes({"People": rows}) if xlsx else csv_bytes(rows)
    name = "people.xlsx" if xlsx else "people.csv"
    sheet = read_spreadsheet(data, filename=name)
    async with sessionmaker.begin() as session:
        return await run_import(session, sheet, filename=name, options=ImportOptions(**options))


async def owner_of(sessionmaker: Sessionmaker, address: str) -> Recipient | None:
    async with sessionmaker() as session:
        recipient: Recipient | None = await session.scalar(
            select(Recipient)
            .join(Address, Address.recipient_id == Recipient.id)
            .where(Address.address == address, Recipient.deleted_at.is_(None))
        )
        return recipient


async def count(sessionmaker: Sessionmaker, model: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def contoso(sessionmaker: Sessionmaker) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")


PEOPLE = [
    HEADER,
    ["alice@contoso.com", "Alice", "ali@contoso.com", "", "staff@contoso.com", "Sales"],
    ["bob@contoso.com", "Bob", "", "", "staff@contoso.com; it@contoso.com", "IT"],
    ["staff@contoso.com", "All staff", "everyone@contoso.com", "group", "", ""],
]


@pytest.mark.parametrize("xlsx", [False, True], ids=["csv", "xlsx"])
async def test_importing_the_same_file_twice_changes_nothing_the_second_time(
    sessionmaker: Sessionmaker, contoso: None, xlsx: bool
) -> None:
    first = await run(sessionmaker, PEOPLE, xlsx=xlsx, mode=ImportMode.REPLACE)
    assert (first.adds, first.updates, first.removes, first.unchanged) == (4, 0, 0, 0)
    changes = await count(sessionmaker, Change)
    second = await run(sessionmaker, PEOPLE, xlsx=xlsx, mode=ImportMode.REPLACE)
    assert (second.adds, second.updates, second.removes, second.unchanged) == (0, 0, 0, 3)
    assert second.status.value == "applied"
    assert await count(sessionmaker, Change) == changes  # nothing written to the change log


async def test_groups_column_creates_spreadsheet_groups_with_members(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    report = await run(sessionmaker, PEOPLE)
    assert [(r.email, r.kind) for r in report.diff.adds] == [
        ("alice@contoso.com", "user"),
        ("bob@contoso.com", "user"),
        ("staff@contoso.com", "group"),
        ("it@contoso.com", "group"),  # named only in the groups column: a bare group
    ]
    staff = await owner_of(sessionmaker, "everyone@contoso.com")
    it = await owner_of(sessionmaker, "it@contoso.com")
    assert staff is not None and it is not None
    assert (staff.kind, staff.source, staff.display_name) == ("group", "spreadsheet", "All staff")
    async with sessionmaker() as session:
        names = {
            m.external_id for m in await group_service.members(session, staff, transitive=False)
        }
        assert names == {"alice@contoso.com", "bob@contoso.com"}
        it_members = await group_service.members(session, it, transitive=False)
        assert [m.external_id for m in it_members] == ["bob@contoso.com"]


async def test_a_group_named_by_its_alias_is_the_row_with_that_alias(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    report = await run(
        sessionmaker,
        [["email", "aliases", "groups"], ["carol@contoso.com", "", "everyone@contoso.com"],
         ["staff@contoso.com", "everyone@contoso.com", ""]],
    )  # fmt: skip
    assert report.errors == []
    assert {(r.email, r.kind) for r in report.diff.adds} == {
        ("carol@contoso.com", "user"),
        ("staff@contoso.com", "group"),  # empty kind reads as user and is promoted
    }


async def test_a_group_row_of_another_kind_is_refused(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    report = await run(
        sessionmaker,
        [["email", "kind", "groups"], ["dan@contoso.com", "", "info@contoso.com"],
         ["info@contoso.com", "shared mailbox", ""]],
    )  # fmt: skip
    assert [(e.row, e.column) for e in report.errors] == [(3, "kind")]
    assert "named as a group on row 2" in report.errors[0].reason
    assert report.status.value == "rejected" and await count(sessionmaker, Recipient) == 0


async def test_an_address_owned_by_the_directory_is_a_conflict_naming_the_owner(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        graph = await make_connector(session, SourceKind.GRAPH, name="entra")
        await make_recipient(
            session,
            graph,
            external_id="g-1",
            addresses=["erin@contoso.com"],
            display_name="Erin from Entra",
        )
    rows = [
        ["email", "aliases"],
        ["frank@contoso.com", ""],
        ["eve@contoso.com", "erin@contoso.com"],
    ]
    report = await run(sessionmaker, rows)
    assert report.status.value == "rejected" and report.adds == 0
    assert [(e.row, e.column) for e in report.errors] == [(3, "aliases")]
    reason = report.errors[0].reason
    assert "Erin from Entra" in reason and "graph connector 'entra'" in reason
    assert "conflict" in reason
    assert await owner_of(sessionmaker, "frank@contoso.com") is None

    partial = await run(sessionmaker, rows, partial=True)
    assert (partial.status.value, partial.adds, partial.error_count) == ("applied", 1, 1)
    assert await owner_of(sessionmaker, "frank@contoso.com") is not None
    owner = await owner_of(sessionmaker, "erin@contoso.com")
    assert owner is not None and owner.source == "graph"


async def test_a_manual_users_address_is_refused_too(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    async with sessionmaker.begin() as session:
        manual = await make_connector(session, SourceKind.MANUAL)
        await make_recipient(session, manual, external_id="m-1", addresses=["gus@contoso.com"])
    report = await run(sessionmaker, [["email"], ["gus@contoso.com"]])
    assert "already belongs to m-1 (manual connector 'manual')" in report.errors[0].reason


async def test_a_domain_not_accepted_is_a_row_error_unless_added(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    rows = [
        ["email", "groups"],
        ["ivy@contoso.com", "team@fabrikam.example"],
        ["jo@contoso.com", ""],
    ]
    report = await run(sessionmaker, rows)
    assert [(e.row, e.column) for e in report.errors] == [(2, "groups")]
    assert "fabrikam.example is not an accepted domain" in report.errors[0].reason
    added = await run(sessionmaker, rows, add_domains=True)
    assert added.domains_added == ["fabrikam.example"] and added.adds == 3
    assert await owner_of(sessionmaker, "team@fabrikam.example") is not None


async def test_rows_of_two_tenants_are_refused(sessionmaker: Sessionmaker, contoso: None) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "fabrikam.example", tenant="fabrikam")
    with pytest.raises(InvalidInput, match=r"several tenants: default \(contoso.com\); fabrikam"):
        await run(sessionmaker, [["email"], ["a@contoso.com"], ["b@fabrikam.example"]])


async def test_the_tenant_follows_from_the_domains(sessionmaker: Sessionmaker) -> None:
    async with sessionmaker.begin() as session:
        await make_domain(session, "fabrikam.example", tenant="fabrikam")
    report = await run(sessionmaker, [["email"], ["kim@fabrikam.example"]])
    assert (report.tenant, report.connector) == ("fabrikam", "spreadsheet")


async def test_update_lists_the_changed_fields(sessionmaker: Sessionmaker, contoso: None) -> None:
    await run(sessionmaker, PEOPLE)
    changed = [list(r) for r in PEOPLE]
    changed[1][1] = "Alice Smith"
    changed[2][4] = "staff@contoso.com"  # bob leaves it@
    report = await run(sessionmaker, changed, dry_run=True)
    assert [(r.email, r.fields) for r in report.diff.updates] == [
        ("alice@contoso.com", ("display name",)),
        ("bob@contoso.com", ("groups",)),
    ]
    assert report.unchanged == 1
    applied = await run(sessionmaker, changed)
    assert applied.updates == 2
    again = await run(sessionmaker, changed)
    assert (again.adds, again.updates, again.removes) == (0, 0, 0)


async def test_dry_run_writes_nothing_but_its_report(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    report = await run(sessionmaker, PEOPLE, dry_run=True, mode=ImportMode.REPLACE)
    assert (report.status.value, report.adds) == ("dry_run", 4)
    assert await count(sessionmaker, Recipient) == 0
    async with sessionmaker() as session:
        assert report.id is not None
        stored = await get_report(session, report.id)
    assert stored["status"] == "dry_run" and stored["adds"] == 4


async def test_replace_removes_missing_rows_and_merge_keeps_them(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    await run(sessionmaker, PEOPLE)
    only_bob = [HEADER, PEOPLE[2]]
    merged = await run(sessionmaker, only_bob, mode=ImportMode.MERGE)
    assert merged.removes == 0
    assert await owner_of(sessionmaker, "alice@contoso.com") is not None
    replaced = await run(sessionmaker, only_bob, mode=ImportMode.REPLACE)
    assert {r.email for r in replaced.diff.removes} == {"alice@contoso.com"}
    assert replaced.removes == 1  # staff@ and it@ stay: bob still names them
    assert await owner_of(sessionmaker, "ali@contoso.com") is None
    staff = await owner_of(sessionmaker, "staff@contoso.com")
    assert staff is not None
    async with sessionmaker() as session:
        members = await group_service.members(session, staff, transitive=False)
    assert [m.external_id for m in members] == ["bob@contoso.com"]


async def test_replace_beyond_the_guard_holds_removals_and_keeps_accepting(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    rows = [["email"]] + [[f"user{i}@contoso.com"] for i in range(6)]
    await run(sessionmaker, rows)
    guard = GuardSettings(threshold=3)
    kept = rows[:3]
    report = await run(sessionmaker, kept, mode=ImportMode.REPLACE, guard=guard)
    assert (report.status.value, report.removes, report.held_deletions) == ("held", 0, 4)
    assert "held by the mass-deletion guard" in report.message
    assert await owner_of(sessionmaker, "user5@contoso.com") is not None  # still accepted
    async with sessionmaker() as session:
        connector = await session.scalar(select(Connector).where(Connector.kind == "spreadsheet"))
        assert connector is not None and connector.state == "needs_approval"
    again = await run(sessionmaker, kept, mode=ImportMode.REPLACE, guard=guard)
    assert (again.adds, again.updates, again.removes, again.held_deletions) == (0, 0, 0, 4)
    preview = await run(sessionmaker, kept, mode=ImportMode.REPLACE, guard=guard, dry_run=True)
    assert preview.held_deletions == 4

    assert await approve_deletions(sessionmaker, connector.id) == 4
    assert await owner_of(sessionmaker, "user5@contoso.com") is None
    assert await owner_of(sessionmaker, "user1@contoso.com") is not None


async def test_a_held_row_that_comes_back_is_no_longer_deleted(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    rows = [["email"]] + [[f"user{i}@contoso.com"] for i in range(5)]
    await run(sessionmaker, rows)
    guard = GuardSettings(threshold=2)
    await run(sessionmaker, rows[:2], mode=ImportMode.REPLACE, guard=guard)  # 4 held
    back = await run(sessionmaker, rows[:4], mode=ImportMode.REPLACE, guard=guard)  # 0-2 back
    assert (back.status.value, back.removes, back.held_deletions) == ("applied", 2, 0)
    assert await owner_of(sessionmaker, "user2@contoso.com") is not None
    assert await owner_of(sessionmaker, "user3@contoso.com") is None


async def test_partial_replace_never_removes_what_a_bad_row_names(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    rows = [["email", "enabled"], ["kay@contoso.com", "yes"], ["lee@contoso.com", "yes"]]
    await run(sessionmaker, rows)
    typo = [["email", "enabled"], ["kay@contoso.com", "yes"], ["lee@contoso.com", "maybe"]]
    report = await run(sessionmaker, typo, mode=ImportMode.REPLACE, partial=True)
    assert [(e.row, e.column) for e in report.errors] == [(3, "enabled")]
    assert report.removes == 0
    assert await owner_of(sessionmaker, "lee@contoso.com") is not None


async def test_an_alias_moves_from_a_removed_row_in_replace_mode(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    await run(sessionmaker, [["email", "aliases"], ["old@contoso.com", "sales@contoso.com"]])
    moved = [["email", "aliases"], ["new@contoso.com", "sales@contoso.com"]]
    merge = await run(sessionmaker, moved)
    assert [(e.row, e.column) for e in merge.errors] == [(2, "aliases")]
    assert "already an address of old@contoso.com" in merge.errors[0].reason
    replace = await run(sessionmaker, moved, mode=ImportMode.REPLACE)
    assert (replace.adds, replace.removes, replace.errors) == (1, 1, [])
    owner = await owner_of(sessionmaker, "sales@contoso.com")
    assert owner is not None and owner.external_id == "new@contoso.com"


async def test_permissions_and_attributes_are_stored(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    await run(
        sessionmaker,
        [
            ["email", "permissions", "Cost Center"],
            ["max@contoso.com", "send-as; full-access", "42"],
        ],
    )
    owner = await owner_of(sessionmaker, "max@contoso.com")
    assert owner is not None
    assert owner.attributes == {"Cost Center": "42", "permissions": ["send-as", "full-access"]}


async def test_another_connector_name_keeps_its_own_set(
    sessionmaker: Sessionmaker, contoso: None
) -> None:
    await run(sessionmaker, [["email"], ["nia@contoso.com"]])
    other = await run(
        sessionmaker, [["email"], ["oz@contoso.com"]], connector="folders", mode=ImportMode.REPLACE
    )
    assert (other.connector, other.adds, other.removes) == ("folders", 1, 0)
    assert await owner_of(sessionmaker, "nia@contoso.com") is not None
    clash = await run(sessionmaker, [["email"], ["nia@contoso.com"]], connector="folders")
    assert "spreadsheet connector 'spreadsheet'" in clash.errors[0].reason

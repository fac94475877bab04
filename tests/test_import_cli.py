"""`roster import` as scripts use it, straight on the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.connectors.spreadsheet.files import csv_bytes
from tests.factories import make_domain

CONTRACT_KEYS = {"mode", "dry_run", "adds", "updates", "removes", "unchanged", "errors"}
ADDED_KEYS = {"groups_created"}  # added after the contract was written; scripts may ignore it


def roster(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ROSTER_DATABASE_URL": db, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(data) == CONTRACT_KEYS | ADDED_KEYS
    return data


@pytest.fixture
async def db(database_url: str, sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
    return database_url


def write(path: Path, rows: list[list[str]]) -> Path:
    path.write_bytes(csv_bytes(rows))
    return path


async def test_json_report_is_the_contract_plus_groups_created_and_reimport_changes_nothing(
    db: str, tmp_path: Path
) -> None:
    people = write(
        tmp_path / "people.csv",
        [
            ["email", "aliases", "groups"],
            ["alice@contoso.com", "ali@contoso.com", "team@contoso.com"],
        ],
    )
    preview = report(roster(db, "import", str(people), "--dry-run", "--json"))
    assert preview == {
        "mode": "merge",
        "dry_run": True,
        "adds": 2,
        "updates": 0,
        "removes": 0,
        "unchanged": 0,
        "errors": [],
        "groups_created": ["team@contoso.com"],
    }
    assert roster(db, "lookup", "ali@contoso.com").returncode == 1  # the preview changed nothing
    first = roster(db, "import", str(people), "--json")
    assert first.returncode == 0, first.stderr
    assert report(first)["adds"] == 2
    assert roster(db, "lookup", "ali+x@contoso.com", "team@contoso.com").returncode == 0
    second = report(roster(db, "import", str(people), "--json"))
    assert (second["adds"], second["updates"], second["removes"], second["unchanged"]) == (
        0,
        0,
        0,
        1,
    )


async def test_bad_rows_exit_non_zero_unless_partial(db: str, tmp_path: Path) -> None:
    people = write(
        tmp_path / "people.csv",
        [["email", "enabled"], ["bob@contoso.com", "yes"], ["carol@contoso.com", "perhaps"]],
    )
    refused = roster(db, "import", str(people), "--json")
    assert refused.returncode == 1
    data = report(refused)
    assert data["adds"] == 0
    assert [(e["row"], e["column"]) for e in data["errors"]] == [(3, "enabled")]
    assert roster(db, "lookup", "bob@contoso.com").returncode == 1

    partial = roster(db, "import", str(people), "--partial", "--json")
    assert partial.returncode == 0
    assert report(partial)["adds"] == 1
    assert roster(db, "lookup", "bob@contoso.com").returncode == 0

    table = roster(db, "import", str(people))
    assert table.returncode == 1
    assert "rows with errors" in table.stdout and "perhaps" in table.stdout


async def test_a_refused_file_exits_1_with_the_reason(db: str, tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.csv", [["email", "Password"], ["dan@contoso.com", "x"]])
    result = roster(db, "import", str(secret), "--json")
    assert result.returncode == 1
    data = report(result)
    assert data["errors"][0]["row"] is None
    assert "never stores passwords" in data["errors"][0]["reason"]
    assert "never stores passwords" in result.stderr
    legacy = tmp_path / "old.xls"
    legacy.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    plain = roster(db, "import", str(legacy))
    assert plain.returncode == 1 and "save it as" in plain.stderr


async def test_template_then_replace_mode_and_summary_table(db: str, tmp_path: Path) -> None:
    for name in ("template.xlsx", "template.csv"):
        written = roster(db, "import", "--template", str(tmp_path / name))
        assert written.returncode == 0 and (tmp_path / name).stat().st_size > 0
    applied = roster(db, "import", str(tmp_path / "template.xlsx"), "--add-domains")
    assert applied.returncode == 0, applied.stderr
    assert "adds" in applied.stdout and "applied" in applied.stdout
    assert roster(db, "lookup", "everyone@example.com").returncode == 0

    one = write(tmp_path / "one.csv", [["email"], ["info@example.com"]])
    replaced = report(roster(db, "import", str(one), "--mode", "replace", "--json"))
    # alice, the staff group and the two groups the template names only in its groups column
    assert (replaced["mode"], replaced["removes"], replaced["updates"]) == ("replace", 4, 1)
    assert roster(db, "lookup", "alice.smith@example.com").returncode == 1
    assert roster(db, "import", str(one), "--mode", "sideways").returncode != 0


async def test_group_names_dry_run_lists_the_groups_to_create_then_import_creates_them_once(
    db: str, tmp_path: Path
) -> None:
    people = write(
        tmp_path / "people.csv",
        [
            ["email", "groups"],
            ["erin@contoso.com", "Sales Team; All staff"],
            ["fay@contoso.com", "all staff;; Front desk <desk@contoso.com>"],
        ],
    )
    preview = roster(db, "import", str(people), "--dry-run", "--json")
    assert preview.returncode == 0, preview.stderr
    assert report(preview)["groups_created"] == [
        "Front desk <desk@contoso.com>",
        "All staff",
        "Sales Team",
    ]
    assert roster(db, "lookup", "erin@contoso.com").returncode == 1  # nothing written
    table = roster(db, "import", str(people), "--dry-run")
    assert "groups to create: Front desk <desk@contoso.com>; All staff; Sales Team" in (
        table.stdout.replace("\n", " ")
    )

    first = report(roster(db, "import", str(people), "--json"))
    assert (first["adds"], first["errors"]) == (5, [])
    assert roster(db, "lookup", "erin@contoso.com", "desk@contoso.com").returncode == 0
    again = report(roster(db, "import", str(people), "--json"))
    assert (again["adds"], again["updates"], again["groups_created"]) == (0, 0, [])

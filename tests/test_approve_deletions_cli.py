"""`roster approve-deletions` as an operator runs it after the deletion guard held a big removal.

Real subprocesses on a real database (SQLite and PostgreSQL): a spreadsheet import in replace
mode removes more rows than ROSTER_DELETE_THRESHOLD allows, so the guard holds them; the held
addresses stay accepted until the command applies them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import one_engine
from tests.connectors.spreadsheet.files import csv_bytes
from tests.factories import make_domain

PEOPLE = [f"person{n}@contoso.com" for n in range(8)]


def roster(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ROSTER_DATABASE_URL": db, "ROSTER_DELETE_THRESHOLD": "3", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def verdicts(db: str) -> dict[str, str]:
    """What `roster lookup` answers for every address of the file, in one run."""
    result = roster(db, "lookup", "--json", *PEOPLE)
    assert result.returncode in (0, 1), result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["address"]: line["verdict"] for line in lines}


@pytest.fixture
async def db(database_url: str, sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with sessionmaker.begin() as session:
        await make_domain(session, "contoso.com")
    return database_url


def held_deletions(db: str) -> dict[str, int]:
    listing = roster(db, "status", "--json")
    assert listing.returncode == 0, listing.stderr
    return {c["name"]: c["held_deletions"] for c in json.loads(listing.stdout)}


async def test_held_deletions_stay_accepted_until_approved_then_are_gone(
    db: str, tmp_path: Path
) -> None:
    everyone = tmp_path / "everyone.csv"
    everyone.write_bytes(csv_bytes([["email"], *([p] for p in PEOPLE)]))
    assert roster(db, "import", str(everyone)).returncode == 0
    few = tmp_path / "few.csv"
    few.write_bytes(csv_bytes([["email"], [PEOPLE[0]]]))
    held = roster(db, "import", str(few), "--mode", "replace", "--json")
    assert held.returncode == 0, held.stderr
    assert held_deletions(db)["spreadsheet"] == 7
    assert set(verdicts(db).values()) == {"accept"}  # 7 > 3: held, and still accepted

    approved = roster(db, "approve-deletions", "spreadsheet")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == "applied 7 held deletions"
    assert verdicts(db) == {p: "accept" if p == PEOPLE[0] else "reject" for p in PEOPLE}
    assert held_deletions(db)["spreadsheet"] == 0
    again = roster(db, "approve-deletions", "spreadsheet")
    assert (again.returncode, again.stdout.strip()) == (0, "applied 0 held deletions")


@one_engine
async def test_an_unknown_connector_is_a_clear_error(db: str) -> None:
    result = roster(db, "approve-deletions", "nope")
    assert result.returncode == 1
    assert "no connector 'nope'" in result.stderr

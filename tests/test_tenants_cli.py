"""`roster tenants …` and `roster domains add --tenant` as an operator types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

ROSTER = [sys.executable, "-m", "app"]


@pytest.fixture
def db(database_url: str, sessionmaker: Any) -> str:
    """The migrated test database (SQLite and PostgreSQL); emptied after each test."""
    return database_url


def roster(db: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ROSTER_DATABASE_URL": db, "COLUMNS": "200"}
    result = subprocess.run(
        [*ROSTER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"roster {args} exited {result.returncode}: {result.stderr}")
    return result


def test_a_tenant_is_added_listed_shown_and_removed(db: str) -> None:
    added = roster(
        db, "tenants", "add", "fabrikam", "--display-name", "Fabrikam Ltd",
        "--reject-disabled", "--max-staleness", "3600", "--delete-threshold", "50",
        "--delete-threshold-percent", "12.5", "--json",
    )  # fmt: skip
    created = json.loads(added.stdout)
    assert set(created) == {"id", "name", "display_name", "created_at", "policy"}
    assert created["policy"] == {
        "reject_disabled": True,
        "max_staleness": 3600,
        "delete_threshold": 50,
        "delete_threshold_percent": 12.5,
    }
    roster(db, "tenants", "add", "contoso", "--no-reject-disabled")

    listed = json.loads(roster(db, "tenants", "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["contoso", "fabrikam"]
    assert listed[0]["policy"]["reject_disabled"] is False
    assert listed[0]["policy"]["max_staleness"] is None
    table = roster(db, "tenants", "list").stdout
    assert "Fabrikam Ltd" in table and "max_staleness=3600" in table

    shown = json.loads(roster(db, "tenants", "show", "fabrikam", "--json").stdout)
    assert shown["id"] == created["id"] and shown["domains"] == []
    text = roster(db, "tenants", "show", "contoso").stdout
    assert "reject_disabled: false" in text and "max_staleness: inherit" in text

    removed = roster(db, "tenants", "remove", "fabrikam")
    assert "removed tenant fabrikam" in removed.stdout
    gone = roster(db, "tenants", "show", "fabrikam", check=False)
    assert gone.returncode == 1 and "fabrikam" in gone.stderr


def test_a_tenant_with_a_domain_is_not_removed_and_the_command_says_why(db: str) -> None:
    roster(db, "tenants", "add", "fabrikam")
    roster(db, "domains", "add", "fabrikam.com", "--tenant", "fabrikam")
    refused = roster(db, "tenants", "remove", "fabrikam", check=False)
    assert refused.returncode == 1
    assert "fabrikam.com" in refused.stderr
    shown = json.loads(roster(db, "tenants", "show", "fabrikam", "--json").stdout)
    assert shown["domains"] == ["fabrikam.com"]
    default = roster(db, "tenants", "remove", "default", check=False)
    assert default.returncode == 1 and "default tenant cannot be deleted" in default.stderr


def test_bad_names_duplicates_and_bad_policy_values_exit_1_with_the_reason(db: str) -> None:
    bad = roster(db, "tenants", "add", "Fabrikam", check=False)
    assert bad.returncode == 1 and "lower-case slug" in bad.stderr
    roster(db, "tenants", "add", "fabrikam")
    again = roster(db, "tenants", "add", "fabrikam", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    negative = roster(db, "tenants", "add", "contoso", "--max-staleness", "-5", check=False)
    assert negative.returncode == 1 and "max_staleness" in negative.stderr
    names = [t["name"] for t in json.loads(roster(db, "tenants", "list", "--json").stdout)]
    assert names == ["fabrikam"]


def test_domains_add_needs_an_existing_tenant_and_one_owner_per_domain(db: str) -> None:
    unknown = roster(db, "domains", "add", "a.com", "--tenant", "nobody", check=False)
    assert unknown.returncode == 1 and "tenant nobody does not exist" in unknown.stderr
    roster(db, "tenants", "add", "t1")
    roster(db, "tenants", "add", "t2")
    roster(db, "domains", "add", "a.com", "--tenant", "t1")
    taken = roster(db, "domains", "add", "A.com", "--tenant", "t2", check=False)
    assert taken.returncode == 1 and "tenant t1" in taken.stderr
    listing = roster(db, "domains", "list").stdout
    assert "a.com" in listing and "t1" in listing and "t2" not in listing

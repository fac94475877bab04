"""The `roster` command as scripts use it: straight on the database, exit codes as documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROSTER = [sys.executable, "-m", "app"]


def roster(db: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ROSTER_DATABASE_URL": db, "COLUMNS": "200"}
    result = subprocess.run(
        [*ROSTER, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"roster {args} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'roster.db'}"
    roster(url, "db", "upgrade")
    roster(url, "domains", "add", "contoso.com")
    roster(
        url, "users", "add", "alice@contoso.com", "--alias", "ali@contoso.com", "--name", "Alice"
    )
    return url


def test_lookup_exit_codes(db: str) -> None:
    assert roster(db, "lookup", "ALI+tag@contoso.com").returncode == 0
    assert roster(db, "lookup", "alice@contoso.com", "bob@contoso.com", check=False).returncode == 1
    assert roster(db, "lookup", "bad address", check=False).returncode == 1


def test_lookup_json_has_the_http_fields_in_input_order(db: str) -> None:
    result = roster(db, "lookup", "--json", "ali@contoso.com", "x@other.org", check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["address"] for line in lines] == ["ali@contoso.com", "x@other.org"]
    assert lines[0]["primary"] == "alice@contoso.com" and lines[0]["valid"] is True
    assert set(lines[0]) == {
        "address",
        "valid",
        "verdict",
        "reason",
        "matched",
        "primary",
        "kind",
        "enabled",
        "recipient_id",
        "tenant",
        "source",
    }
    assert lines[1]["reason"] == "domain_not_accepted"


def test_lookup_defers_with_75_when_the_database_is_unreadable(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'roster.db'}"
    result = roster(missing, "lookup", "alice@contoso.com", check=False)
    assert result.returncode == 75, result.stderr


def test_apikey_create_prints_the_key_alone_on_its_last_line(db: str) -> None:
    result = roster(db, "apikey", "create", "gateway", "--scope", "lookup", "--scope", "read")
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("rst_") and " " not in key
    as_json = json.loads(roster(db, "apikey", "create", "ops", "--scope", "admin", "--json").stdout)
    assert set(as_json) == {"id", "name", "scopes", "tenants", "key"}
    assert (as_json["scopes"], as_json["tenants"]) == (["admin"], None)  # a global key
    listing = roster(db, "apikey", "list").stdout
    assert "gateway" in listing and key not in listing and as_json["key"] not in listing
    roster(db, "apikey", "revoke", as_json["id"])
    bad = roster(db, "apikey", "create", "x", "--scope", "root", check=False)
    assert bad.returncode == 1 and "unknown scope" in bad.stderr


def test_status_lists_connectors(db: str) -> None:
    items = json.loads(roster(db, "status", "--json").stdout)
    assert [(i["kind"], i["state"], i["addresses"]) for i in items] == [("manual", "ready", 2)]


def test_users_add_refuses_foreign_domain(db: str) -> None:
    result = roster(db, "users", "add", "zed@fabrikam.com", check=False)
    assert result.returncode == 1 and "fabrikam.com" in result.stderr

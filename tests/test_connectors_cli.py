"""`roster connectors pause|resume` straight on the database, as an operator runs them."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import roster


@pytest.fixture
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'roster.db'}"
    roster(url, "db", "upgrade")
    roster(url, "domains", "add", "contoso.com")
    roster(url, "users", "add", "alice@contoso.com")
    return url


def paused(db: str) -> dict[str, bool]:
    items = json.loads(roster(db, "status", "--json").stdout)
    return {f"{i['tenant']}/{i['name']}": i["paused"] for i in items}


def test_pause_and_resume_show_in_status_and_say_what_happens(db: str) -> None:
    assert paused(db) == {"default/manual": False}
    result = roster(db, "connectors", "pause", "default/manual")
    assert "paused" in result.stdout and "roster connectors resume manual" in result.stdout
    assert paused(db) == {"default/manual": True}
    assert "ready (paused)" in roster(db, "status").stdout
    assert "already paused" in roster(db, "connectors", "pause", "manual").stdout
    assert roster(db, "lookup", "alice@contoso.com").returncode == 0  # lookups go on
    assert "resumed" in roster(db, "connectors", "resume", "manual").stdout
    assert paused(db) == {"default/manual": False}


def test_pausing_an_unknown_connector_fails_and_names_it(db: str) -> None:
    result = roster(db, "connectors", "pause", "nope", check=False)
    assert result.returncode == 1
    assert "no connector 'nope'" in result.stderr

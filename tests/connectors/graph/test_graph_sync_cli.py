"""`roster sync` as a real process against the simulator, then `roster lookup` on its database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from app.simulator.graph import RunningSimulator


def roster(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def graph_env(simulator: RunningSimulator, tmp_path: Path, secret: str) -> dict[str, str]:
    state = simulator.state
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    return env | {
        "ROSTER_DATABASE_URL": f"sqlite:///{tmp_path / 'roster.db'}",
        "ROSTER_GRAPH__TENANT_ID": state.tenant_id,
        "ROSTER_GRAPH__CLIENT_ID": state.client_id,
        "ROSTER_GRAPH__CLIENT_SECRET": secret,
        "ROSTER_GRAPH__BASE_URL": simulator.base_url,
        "ROSTER_GRAPH__AUTHORITY_HOST": simulator.authority,
        "ROSTER_GRAPH__CA_BUNDLE": str(simulator.ca_file),
    }


def test_roster_sync_mirrors_the_tenant_and_lookups_answer(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    state = simulator.state
    env = graph_env(simulator, tmp_path, state.client_secret)
    assert roster(env, "db", "upgrade").returncode == 0
    synced = roster(env, "sync")
    assert synced.returncode == 0, synced.stderr
    assert "graph: ok" in synced.stdout
    expected = state.expected_accepted()
    alias, primary = next((a, p) for a, p in sorted(expected.items()) if a != p)
    looked = roster(env, "lookup", "--json", alias.upper(), "nobody@contoso.com")
    answers = [orjson.loads(line) for line in looked.stdout.splitlines()]
    assert [a["verdict"] for a in answers] == ["accept", "reject"], looked.stdout
    assert answers[0]["primary"] == primary
    status = roster(env, "status", "--json")
    (graph,) = orjson.loads(status.stdout)
    assert (graph["state"], graph["first_round_done"]) == ("ready", True)
    assert graph["addresses"] == len(expected)

    state.add_user(mail="cli.new@contoso.com")
    assert roster(env, "sync").returncode == 0
    assert roster(env, "lookup", "cli.new@contoso.com").returncode == 0


def test_roster_sync_fails_with_a_clear_error_and_no_secret(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    env = graph_env(simulator, tmp_path, "not-the-secret-123")
    assert roster(env, "db", "upgrade").returncode == 0
    synced = roster(env, "sync")
    assert synced.returncode == 1
    assert "graph: failed" in synced.stderr
    assert "authentication failed" in synced.stderr
    assert "not-the-secret-123" not in synced.stdout + synced.stderr
    looked = roster(env, "lookup", "anyone@contoso.com")
    assert looked.returncode in (1, 75)  # domain unknown or not ready: never an accept

"""The files users deploy with: the compose file parses and wires Roster to PostgreSQL 16."""

from __future__ import annotations

from pathlib import Path

import yaml


def test_compose_runs_roster_against_postgres_16(repo_root: Path) -> None:
    compose = yaml.safe_load((repo_root / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["db"]["image"] == "postgres:16"
    roster = services["roster"]
    assert roster["build"] == "."
    assert roster["environment"]["ROSTER_DATABASE_URL"].startswith("postgresql://")
    assert "db" in roster["depends_on"]
    assert all(p.startswith("127.0.0.1:") for p in roster["ports"])


def test_dockerfile_installs_the_package_and_runs_migrations(repo_root: Path) -> None:
    dockerfile = (repo_root / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "roster db upgrade" in dockerfile and "roster serve" in dockerfile

"""`alembic upgrade head` works on both databases and the models agree with the history."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.db.migrate import check, upgrade
from app.directory.models import member_key
from tests.conftest import make_test_database


def test_models_and_migrations_agree(database_url: str) -> None:
    # database_url is already migrated to head by the fixture (upgrade ran without error).
    check(database_url)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_member_key_migration_keeps_edges_and_fills_keys(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Edges written before the member_key column existed survive the upgrade, keyed."""
    url, drop = make_test_database(kind, tmp_path_factory)
    try:
        upgrade(url, "0fbadd1e74f0")
        engine = sa.create_engine(url.replace("+aiosqlite", ""))  # psycopg does both
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO memberships VALUES (:g, :c, :m)"),
                [{"g": f"group-{i}", "c": "connector", "m": f"member-{i}"} for i in range(3)],
            )
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT member_external_id, member_key FROM memberships "
                    "ORDER BY member_external_id"
                )
            ).all()
        engine.dispose()
        assert rows == [(f"member-{i}", member_key(f"member-{i}")) for i in range(3)]
    finally:
        if drop is not None:
            drop()

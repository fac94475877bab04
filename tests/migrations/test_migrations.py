"""`alembic upgrade head` works on both databases and the models agree with the history."""

from __future__ import annotations

from app.db.migrate import check


def test_models_and_migrations_agree(database_url: str) -> None:
    # database_url is already migrated to head by the fixture (upgrade ran without error).
    check(database_url)

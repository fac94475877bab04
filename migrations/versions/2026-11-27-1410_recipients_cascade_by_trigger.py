"""recipients: a delete trigger on connectors instead of the per-row foreign key

Revision ID: 9b4d6f2a3c58
Revises: 8a3c5e1f2b47
Create Date: 2026-11-27 14:10:00

Every recipient written checked and locked its connector's row (the same row, once per
recipient of a bulk round). Recipients are written only by the directory service, for the
connector it is running; the cascade stays as a trigger (and from recipients to addresses
through `recipients_drop_addresses`).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9b4d6f2a3c58"
down_revision: str | None = "8a3c5e1f2b47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRESQL = [
    """
    CREATE FUNCTION roster_drop_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM recipients WHERE connector_id = OLD.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER connectors_drop_recipients AFTER DELETE ON connectors
    FOR EACH ROW EXECUTE FUNCTION roster_drop_recipients()
    """,
]
_SQLITE = [
    """
    CREATE TRIGGER connectors_drop_recipients AFTER DELETE ON connectors
    FOR EACH ROW BEGIN
        DELETE FROM recipients WHERE connector_id = OLD.id;
    END
    """,
]
# SQLite's batch mode rebuilds `recipients`, which drops the triggers defined on it: put back
# the one from migration 8a3c5e1f2b47 after every rebuild.
_SQLITE_ADDRESSES_TRIGGER = """
    CREATE TRIGGER IF NOT EXISTS recipients_drop_addresses AFTER DELETE ON recipients
    FOR EACH ROW BEGIN
        DELETE FROM addresses WHERE recipient_id = OLD.id;
    END
"""


def upgrade() -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_constraint("fk_recipients_connector_id_connectors", type_="foreignkey")
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRESQL if postgresql else [*_SQLITE, _SQLITE_ADDRESSES_TRIGGER]:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "DROP TRIGGER IF EXISTS connectors_drop_recipients"
        + (" ON connectors" if postgresql else "")
    )
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS roster_drop_recipients()")
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_recipients_connector_id_connectors",
            "connectors",
            ["connector_id"],
            ["id"],
            ondelete="CASCADE",
        )
    if not postgresql:
        op.execute(_SQLITE_ADDRESSES_TRIGGER)

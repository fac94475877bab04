"""addresses: a delete trigger on recipients instead of the per-row foreign key

Revision ID: 8a3c5e1f2b47
Revises: 7e2b9d4c1a06
Create Date: 2026-11-27 14:00:00

On PostgreSQL every address written checked its recipient and locked that row (FOR KEY
SHARE, WAL-logged): ~25 µs an address, most of a bulk import's database time. Addresses are
written only by the directory service, for recipients it holds in the same transaction; what
the key still gave was the cascade, which this trigger keeps (a connector's or tenant's
deletion cascades to its recipients, and from them to their addresses).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8a3c5e1f2b47"
down_revision: str | None = "7e2b9d4c1a06"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POSTGRESQL = [
    """
    CREATE FUNCTION roster_drop_addresses() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM addresses WHERE recipient_id = OLD.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER recipients_drop_addresses AFTER DELETE ON recipients
    FOR EACH ROW EXECUTE FUNCTION roster_drop_addresses()
    """,
]
_SQLITE = [
    """
    CREATE TRIGGER recipients_drop_addresses AFTER DELETE ON recipients
    FOR EACH ROW BEGIN
        DELETE FROM addresses WHERE recipient_id = OLD.id;
    END
    """,
]


def upgrade() -> None:
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.drop_constraint("fk_addresses_recipient_id_recipients", type_="foreignkey")
    statements = _POSTGRESQL if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS recipients_drop_addresses" + _on_recipients())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS roster_drop_addresses()")
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_addresses_recipient_id_recipients",
            "recipients",
            ["recipient_id"],
            ["id"],
            ondelete="CASCADE",
        )


def _on_recipients() -> str:
    return " ON recipients" if op.get_bind().dialect.name == "postgresql" else ""

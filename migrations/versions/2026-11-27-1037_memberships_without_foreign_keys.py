"""memberships without foreign keys

Revision ID: 0fbadd1e74f0
Revises: 869b30b058a4
Create Date: 2026-11-27 10:37:43.870488
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0fbadd1e74f0"
down_revision: str | None = "869b30b058a4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_memberships_group_id_recipients"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_memberships_member_connector_id_connectors"), type_="foreignkey"
        )


def downgrade() -> None:

    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_memberships_member_connector_id_connectors"),
            "connectors",
            ["member_connector_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_memberships_group_id_recipients"),
            "recipients",
            ["group_id"],
            ["id"],
            ondelete="CASCADE",
        )

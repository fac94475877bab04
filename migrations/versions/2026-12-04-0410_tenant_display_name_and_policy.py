"""tenant display name and policy: per-tenant overrides of four global settings (NULL inherits)

Revision ID: 4e7a1c9d2b60
Revises: c4e7a1d93b20
Create Date: 2026-12-04 04:00:00

Plain nullable columns, so no table rebuild's data copy: on SQLite, batch mode adds them with
ALTER TABLE ADD COLUMN (the tenants table has no triggers to recreate).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4e7a1c9d2b60"
down_revision: str | None = "c4e7a1d93b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("reject_disabled", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("max_staleness", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("delete_threshold", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("delete_threshold_percent", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("delete_threshold_percent")
        batch_op.drop_column("delete_threshold")
        batch_op.drop_column("max_staleness")
        batch_op.drop_column("reject_disabled")
        batch_op.drop_column("display_name")

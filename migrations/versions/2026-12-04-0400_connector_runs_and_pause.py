"""connector_runs: the history of every round; connectors.paused

Revision ID: c4e7a1d93b20
Revises: 9b4d6f2a3c58
Create Date: 2026-12-04 04:00:00

One row per round (inserted `running` when it starts, updated when it ends), newest 1,000 per
connector kept. `paused` is operational state, so env connectors can be paused too. The column
is added with ALTER TABLE (no batch rebuild, which on SQLite would drop the delete trigger of
`connectors`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4e7a1d93b20"
down_revision: str | None = "9b4d6f2a3c58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connector_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("connector_id", sa.String(length=36), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("round", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_connector_runs_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connector_runs")),
    )
    op.create_index(
        "ix_connector_runs_connector_id_id", "connector_runs", ["connector_id", "id"], unique=False
    )
    op.add_column(
        "connectors",
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("connectors", "paused")
    op.drop_index("ix_connector_runs_connector_id_id", table_name="connector_runs")
    op.drop_table("connector_runs")

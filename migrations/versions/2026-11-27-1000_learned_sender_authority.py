"""learned sender authority: remember which directory recipient vouched for a learned address

Revision ID: 869b30b058a4
Revises: 9c874d548a1c
Create Date: 2026-11-27 10:00:40.948903
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "869b30b058a4"
down_revision: str | None = "9c874d548a1c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("learned_senders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authority_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("authority_source", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("learned_senders", schema=None) as batch_op:
        batch_op.drop_column("authority_source")
        batch_op.drop_column("authority_id")

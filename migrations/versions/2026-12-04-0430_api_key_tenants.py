"""api key tenants: a key may be restricted to some tenants (NULL = a global key, as before)

Revision ID: 7b3d9e1f5a24
Revises: 4e7a1c9d2b60
Create Date: 2026-12-04 04:30:00

One nullable JSON column of tenant ids: the key cache reads it with the key's scopes in the
same query, and every key existing today stays global.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b3d9e1f5a24"
down_revision: str | None = "4e7a1c9d2b60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("tenant_ids")

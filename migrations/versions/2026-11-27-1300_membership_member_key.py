"""memberships: index a CRC-32 member key instead of the two member text columns

Revision ID: 5d1f0c2a7b93
Revises: 0fbadd1e74f0
Create Date: 2026-11-27 13:00:00

The wide (member_connector_id, member_external_id) index took random inserts over the whole
index for every page of edges; a narrow integer key keeps "groups of a member" indexed at a
fraction of the write cost. Existing rows get their key computed here (CRC-32 is not a SQL
function on either database).
"""

import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1f0c2a7b93"
down_revision: str | None = "0fbadd1e74f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_memberships = sa.table(
    "memberships",
    sa.column("group_id", sa.String),
    sa.column("member_connector_id", sa.String),
    sa.column("member_external_id", sa.String),
    sa.column("member_key", sa.BigInteger),
)


def upgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(sa.Column("member_key", sa.BigInteger(), nullable=True))
    _fill_member_keys()
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.alter_column("member_key", existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_index("ix_memberships_member")
        batch_op.create_index("ix_memberships_member_key", ["member_key"], unique=False)


def _fill_member_keys() -> None:
    bind = op.get_bind()
    t = _memberships.c
    rows = bind.execute(
        sa.select(t.group_id, t.member_connector_id, t.member_external_id).where(
            t.member_key.is_(None)
        )
    ).all()
    update = (
        _memberships.update()
        .where(
            t.group_id == sa.bindparam("g"),
            t.member_connector_id == sa.bindparam("c"),
            t.member_external_id == sa.bindparam("m"),
        )
        .values(member_key=sa.bindparam("k"))
    )
    for start in range(0, len(rows), 10_000):
        batch = rows[start : start + 10_000]
        bind.execute(
            update,
            [{"g": g, "c": c, "m": m, "k": zlib.crc32(m.encode())} for g, c, m in batch],
        )


def downgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_memberships_member_key")
        batch_op.create_index(
            "ix_memberships_member", ["member_connector_id", "member_external_id"], unique=False
        )
        batch_op.drop_column("member_key")

"""duplicate cluster nesting

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:00:00.000000

A near-exact cluster names the similar cluster it lies in. Clusters stored before have none:
the next sweep makes them anew.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("duplicate_cluster", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=26), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_duplicate_cluster_parent_id"), ["parent_id"], unique=False
        )
        batch_op.create_foreign_key(
            "fk_duplicate_cluster_parent_id",
            "duplicate_cluster",
            ["parent_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("duplicate_cluster", schema=None) as batch_op:
        batch_op.drop_constraint("fk_duplicate_cluster_parent_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_duplicate_cluster_parent_id"))
        batch_op.drop_column("parent_id")

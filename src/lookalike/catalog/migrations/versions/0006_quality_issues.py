"""quality issues

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:10:00.000000

The weakest quality factor of an image and the names of its weak factors, so the review queue
can put junk first and say why. Images scored before have none until they are scored again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quality_worst", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("quality_issues", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("quality_issues")
        batch_op.drop_column("quality_worst")

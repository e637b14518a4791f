"""re-embed queue

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 13:00:00.000000

Fallback chains (`embedding/fallback.py`): an image embedded by a fallback model waits in
`reembed_task` until its collection's own model answers again and embeds it into its vector.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lookalike.catalog.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reembed_task",
        sa.Column("image_id", sa.String(length=26), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("from_model_id", sa.String(length=160), nullable=False),
        sa.Column("to_model_id", sa.String(length=160), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id"),
    )
    with op.batch_alter_table("reembed_task", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reembed_task_collection_id"), ["collection_id"], unique=False
        )
        batch_op.create_index("ix_reembed_task_due", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    # Its indexes go with it (MariaDB refuses to drop one that a foreign key uses).
    op.drop_table("reembed_task")

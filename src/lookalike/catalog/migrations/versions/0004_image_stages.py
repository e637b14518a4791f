"""image enrichment stages

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:00:00.000000

Images stored before this migration have every score they will get: their stages are not
created (an absent row reads as "nothing pending").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lookalike.catalog.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_stage",
        sa.Column("image_id", sa.String(length=26), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("lease_until", lookalike.catalog.models.UTCDateTime(), nullable=True),
        sa.Column("updated_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed', 'skipped')",
            name="ck_image_stage_status",
        ),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "stage"),
    )
    with op.batch_alter_table("image_stage", schema=None) as batch_op:
        batch_op.create_index(
            "ix_image_stage_claim", ["stage", "status", "lease_until"], unique=False
        )
        batch_op.create_index(
            "ix_image_stage_collection_status", ["collection_id", "status"], unique=False
        )


def downgrade() -> None:
    # Its indexes go with it (MariaDB refuses to drop one that a foreign key uses).
    op.drop_table("image_stage")

"""image pair match

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:00:00.000000

What the geometric check measured of two images (are they one photograph?), kept so that a
verdict and every later sweep reuse it. Starts empty: pairs are measured when first needed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lookalike.catalog.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_pair_match",
        sa.Column("image_a", sa.String(length=26), nullable=False),
        sa.Column("image_b", sa.String(length=26), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("method", sa.Integer(), nullable=False),
        sa.Column("keypoints", sa.Integer(), nullable=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("inliers", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.Float(), nullable=False),
        sa.Column("containment", sa.Float(), nullable=False),
        sa.Column("correlation", sa.Float(), nullable=False),
        sa.Column("second_plane", sa.Float(), nullable=False),
        sa.Column("spread", sa.Float(), nullable=False),
        sa.Column("same_pixels", sa.Boolean(), nullable=False),
        sa.Column("created_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint("image_a < image_b", name="ck_image_pair_match_order"),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_a"], ["image.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_b"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_a", "image_b"),
    )
    with op.batch_alter_table("image_pair_match", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_pair_match_image_b"), ["image_b"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_image_pair_match_collection_id"), ["collection_id"], unique=False
        )


def downgrade() -> None:
    # Its indexes go with it (MariaDB refuses to drop one that a foreign key uses).
    op.drop_table("image_pair_match")

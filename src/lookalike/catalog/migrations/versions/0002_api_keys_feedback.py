"""api keys and feedback

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lookalike.catalog.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", lookalike.catalog.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", lookalike.catalog.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prefix"),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_key_tenant"), ["tenant"], unique=False)

    op.create_table(
        "feedback",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=26), nullable=True),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=True),
        sa.Column("search_id", sa.String(length=26), nullable=True),
        sa.Column("query_image_id", sa.String(length=26), nullable=True),
        sa.Column("query_text", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("created_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "action IS NULL OR action IN ('relevant', 'irrelevant', 'duplicate', 'anomaly')",
            name="ck_feedback_action",
        ),
        sa.CheckConstraint(
            "score IS NULL OR (score >= 1 AND score <= 10)", name="ck_feedback_score"
        ),
        sa.CheckConstraint("action IS NOT NULL OR score IS NOT NULL", name="ck_feedback_kind"),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_image_created", ["image_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_feedback_search_id"), ["search_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_feedback_tenant"), ["tenant"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes; MariaDB refuses to drop the one the foreign key uses.
    op.drop_table("feedback")
    op.drop_table("api_key")

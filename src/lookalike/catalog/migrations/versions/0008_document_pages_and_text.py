"""document pages and text

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:00:00.000000

Image RAG: an image may be a page of a document (`image.page`), and an image's words (a PDF
page's text layer, or OCR) are kept with their boxes in `image_text`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lookalike.catalog.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page", sa.Integer(), nullable=True))
    op.create_table(
        "image_text",
        sa.Column("image_id", sa.String(length=26), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("words", sa.JSON(), nullable=True),
        sa.Column("created_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("image_id", "source"),
    )
    with op.batch_alter_table("image_text", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_image_text_collection_id"), ["collection_id"], unique=False
        )


def downgrade() -> None:
    # Its indexes go with it (MariaDB refuses to drop one that a foreign key uses).
    op.drop_table("image_text")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("page")

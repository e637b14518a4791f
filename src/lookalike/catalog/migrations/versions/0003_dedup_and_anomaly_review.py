"""dedup and anomaly review

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lookalike.catalog.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicate_cluster",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("sweep_id", sa.String(length=26), nullable=True),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("keeper_image_id", sa.String(length=26), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "tier IN ('exact', 'near_exact', 'similar')", name="ck_duplicate_cluster_tier"
        ),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["keeper_image_id"], ["image.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("duplicate_cluster", schema=None) as batch_op:
        batch_op.create_index(
            "ix_duplicate_cluster_collection_status", ["collection_id", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_duplicate_cluster_sweep_id"), ["sweep_id"], unique=False
        )

    op.create_table(
        "pair_verdict",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("collection_id", sa.String(length=26), nullable=False),
        sa.Column("image_a", sa.String(length=26), nullable=False),
        sa.Column("image_b", sa.String(length=26), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", lookalike.catalog.models.UTCDateTime(), nullable=False),
        sa.CheckConstraint("verdict IN ('same', 'different')", name="ck_pair_verdict_verdict"),
        sa.CheckConstraint("image_a < image_b", name="ck_pair_verdict_order"),
        sa.ForeignKeyConstraint(["collection_id"], ["collection.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_a"], ["image.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_b"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pair_verdict", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pair_verdict_image_b"), ["image_b"], unique=False)
        batch_op.create_index(
            "ix_pair_verdict_pair",
            ["collection_id", "image_a", "image_b", "created_at"],
            unique=False,
        )

    op.create_table(
        "duplicate_cluster_member",
        sa.Column("cluster_id", sa.String(length=26), nullable=False),
        sa.Column("image_id", sa.String(length=26), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["duplicate_cluster.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cluster_id", "image_id"),
    )
    with op.batch_alter_table("duplicate_cluster_member", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_duplicate_cluster_member_image_id"), ["image_id"], unique=False
        )

    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duplicate_tier", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("duplicate_of", sa.String(length=26), nullable=True))
        batch_op.add_column(sa.Column("duplicate_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("anomaly_dnn", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("anomaly_density", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("anomaly_ood", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("anomaly_at", lookalike.catalog.models.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reviewed_at", lookalike.catalog.models.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("reviewed_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("review_note", sa.Text(), nullable=True))
        batch_op.create_index(
            "ix_image_collection_density", ["collection_id", "anomaly_density"], unique=False
        )
        batch_op.create_index(
            "ix_image_collection_dnn", ["collection_id", "anomaly_dnn"], unique=False
        )
        batch_op.create_index(
            "ix_image_collection_ood", ["collection_id", "anomaly_ood"], unique=False
        )
        batch_op.create_foreign_key(
            "fk_image_duplicate_of", "image", ["duplicate_of"], ["id"], ondelete="SET NULL"
        )
        batch_op.drop_column("anomaly_scores")


def downgrade() -> None:
    # Dropping a table drops its indexes; MariaDB refuses to drop one a foreign key uses.
    op.drop_table("duplicate_cluster_member")
    op.drop_table("pair_verdict")
    op.drop_table("duplicate_cluster")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_constraint("fk_image_duplicate_of", type_="foreignkey")
        batch_op.drop_index("ix_image_collection_ood")
        batch_op.drop_index("ix_image_collection_dnn")
        batch_op.drop_index("ix_image_collection_density")
        for column in (
            "review_note",
            "reviewed_by",
            "reviewed_at",
            "anomaly_at",
            "anomaly_ood",
            "anomaly_density",
            "anomaly_dnn",
            "duplicate_score",
            "duplicate_of",
            "duplicate_tier",
        ):
            batch_op.drop_column(column)
        # Nullable on the way down: the rows that exist have no value to give it.
        batch_op.add_column(sa.Column("anomaly_scores", sa.JSON(), nullable=True))

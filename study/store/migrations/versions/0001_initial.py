"""initial schema: zs_studies, zs_trials, zs_epochs

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types used by study.store._models at this revision.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "zs_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("metric", sa.String(length=255), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("versions", JSONType, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("optuna_study_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_zs_studies"),
        sa.UniqueConstraint("name", name="uq_zs_studies_name"),
    )
    op.create_table(
        "zs_trials",
        sa.Column("id", BigId, nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("ray_trial_id", sa.String(length=255), nullable=True),
        sa.Column("params", JSONType, nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.Column("final_value", sa.Float(), nullable=True),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("wall_seconds", sa.Float(), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("config", JSONType, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["zs_studies.id"],
            name="fk_zs_trials_study_id_zs_studies",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_zs_trials"),
        sa.UniqueConstraint("study_id", "number", name="uq_zs_trials_study_id_number"),
    )
    op.create_table(
        "zs_epochs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("trial_id", BigId, nullable=False),
        sa.Column("seed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("valid_loss", sa.Float(), nullable=True),
        sa.Column("valid_metric", sa.Float(), nullable=True),
        sa.Column("tokens_per_second", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["zs_trials.id"],
            name="fk_zs_epochs_trial_id_zs_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_zs_epochs"),
        sa.UniqueConstraint("trial_id", "seed", "epoch", name="uq_zs_epochs_trial_id_seed_epoch"),
    )


def downgrade() -> None:
    op.drop_table("zs_epochs")
    op.drop_table("zs_trials")
    op.drop_table("zs_studies")

"""zs_runs: one row per (trial, seed) run, with why it ended

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

A trial runs one configuration with ``repeats`` seeds; each seed's run ends on its own:
converged (its ``patience`` ran out), budget (it trained every epoch), diverged, pruned (the
scheduler stopped its configuration), interrupted (the run cut it off; a replacement continues
it) or failed. ``ended`` holds a ``study.score.RunEnd`` value; ``epochs`` the last epoch it ran,
``best_epoch`` / ``best_value`` its best validation epoch and value (its score). Trials written
before this revision have no rows until ``zoneout-study db rescore`` derives them from the
epochs table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the id type of study.store._models at this revision.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "zs_runs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("trial_id", BigId, nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("ended", sa.String(length=16), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["zs_trials.id"],
            name="fk_zs_runs_trial_id_zs_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_zs_runs"),
        sa.UniqueConstraint("trial_id", "seed", name="uq_zs_runs_trial_id_seed"),
    )


def downgrade() -> None:
    op.drop_table("zs_runs")

"""zs_runs.layer_path, layer_fallback: which recurrent layer path each run took, and why it fell
back from the preferred one

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08

Each seed's run reports the path its LSTM layer took (a ``trials.zoneout.LayerPath`` value:
'nn_lstm', 'cpu_extension', 'fused', 'reference', 'triton'; then " (eval <path>)" when
evaluation took another) and, when it could not take the preferred one (the CPU extension not
built or turned off, the Triton layer failing its self-check), why. Runs written before this
revision did not report it: both columns stay NULL for them (nothing to derive it from).

The downgrade drops the two columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("zs_runs", sa.Column("layer_path", sa.String(length=64), nullable=True))
    op.add_column("zs_runs", sa.Column("layer_fallback", sa.Text(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on every backend (SQLite >= 3.35), not a batch copy (see 0004).
    op.drop_column("zs_runs", "layer_fallback")
    op.drop_column("zs_runs", "layer_path")

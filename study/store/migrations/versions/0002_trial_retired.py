"""zs_trials.retired: why the service retired a trial (NULL for one it did not)

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01

A trial the run cut off (Ctrl-C / SIGTERM, a lost driver, a worker, node or disk failure) is
FAIL in Optuna, does not count towards the budget, and a replacement continues it. The column
holds a ``study.plan.Retired`` value for it: 'interrupted', 'driver_lost' or 'infrastructure'.
Rows written before this revision are backfilled from the error text the service wrote then.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the error texts the service wrote for retired trials before this revision
# (study.searcher.INTERRUPTED, possibly followed by ' (reason)'; study.reaper.DRIVER_LOST;
# study.searcher.CUT_OFF_PREFIX + reason). A migration must not import app code that may change.
INTERRUPTED = "interrupted: the driver stopped before the trial finished"
DRIVER_LOST = "driver lost"
CUT_OFF_PREFIX = "cut off by the infrastructure: "

_trials = sa.table(
    "zs_trials",
    sa.column("state", sa.String(16)),
    sa.column("error", sa.Text()),
    sa.column("retired", sa.String(32)),
)


def _starts_with(prefix: str) -> sa.ColumnElement[bool]:
    # substr, not LIKE: SQLite's LIKE ignores case, and '_' / '%' would be wildcards.
    return sa.func.substr(_trials.c.error, 1, len(prefix)) == prefix


def upgrade() -> None:
    op.add_column("zs_trials", sa.Column("retired", sa.String(length=32), nullable=True))
    failed = sa.and_(_trials.c.state == "FAIL", _trials.c.retired.is_(None))
    for kind, matches in (
        ("interrupted", _starts_with(INTERRUPTED)),
        ("driver_lost", _trials.c.error == DRIVER_LOST),
        ("infrastructure", _starts_with(CUT_OFF_PREFIX)),
    ):
        op.execute(_trials.update().where(failed, matches).values(retired=kind))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), not a batch copy: SQLite's batch drops and
    # recreates zs_trials, and with foreign keys on that drop cascades to zs_epochs (zs_runs).
    op.drop_column("zs_trials", "retired")

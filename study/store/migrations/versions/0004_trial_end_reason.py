"""zs_trials.end_reason: why a trial ended, a stored fact (NULL while it runs)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Before this revision how a trial ended was read from its state, the ``retired`` column
(migration 0002, itself filled from the error text older versions wrote) and, for a failure,
its error text. The column holds a ``study.plan.TrialEnd`` value written when the trial ends:
'complete', 'pruned', 'failed', 'diverged', 'interrupted', 'driver_lost', 'infrastructure'.
Rows written before this revision are filled by the rule the service used then:

* COMPLETE -> 'complete'; PRUNED -> 'pruned'; RUNNING (and anything else) stays NULL;
* FAIL and ``retired`` set -> that value (the service retired it: interrupted, driver_lost,
  infrastructure);
* FAIL, not retired -> 'diverged' when every seed that failed diverged (``zs_runs.ended``);
  for a trial without runs rows (written before revision 0003), when each of its failed seeds'
  reasons (the error joins them with '; ') names the trainable's ``TrialDiverged`` (the rule
  ``study.score.failure_end`` applies to one seed); else 'failed'.

The downgrade drops the column (``retired``, ``error`` and every other table stay as they were).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the values and names this revision reads and writes (a migration must not
# import app code that may change): study.plan.Retired / TrialEnd values, study.score.RunEnd
# values of a failed run, and the name of trials.trainable.TrialDiverged in an error text.
RETIRED = ("interrupted", "driver_lost", "infrastructure")
RUN_FAILED = "failed"
RUN_DIVERGED = "diverged"
DIVERGED_NAME = "TrialDiverged"
REASONS_SEPARATOR = "; "  # how study.searcher joins the reasons of a trial's failed seeds

_trials = sa.table(
    "zs_trials",
    sa.column("id", sa.Integer()),
    sa.column("state", sa.String(16)),
    sa.column("error", sa.Text()),
    sa.column("retired", sa.String(32)),
    sa.column("end_reason", sa.String(32)),
)
_runs = sa.table("zs_runs", sa.column("trial_id", sa.Integer()), sa.column("ended", sa.String(16)))


def _failure(error: str | None, run_ends: list[str]) -> str:
    failed = [ended for ended in run_ends if ended in (RUN_FAILED, RUN_DIVERGED)]
    if failed:
        return "diverged" if all(ended == RUN_DIVERGED for ended in failed) else "failed"
    reasons = (error or "").split(REASONS_SEPARATOR)
    return "diverged" if all(DIVERGED_NAME in reason for reason in reasons) else "failed"


def upgrade() -> None:
    op.add_column("zs_trials", sa.Column("end_reason", sa.String(length=32), nullable=True))
    unset = _trials.c.end_reason.is_(None)
    for state, end in (("COMPLETE", "complete"), ("PRUNED", "pruned")):
        op.execute(_trials.update().where(unset, _trials.c.state == state).values(end_reason=end))
    failed = sa.and_(unset, _trials.c.state == "FAIL")
    for kind in RETIRED:
        op.execute(
            _trials.update().where(failed, _trials.c.retired == kind).values(end_reason=kind)
        )
    conn = op.get_bind()
    rows = conn.execute(sa.select(_trials.c.id, _trials.c.error).where(failed)).all()
    if not rows:
        return
    run_ends: dict[int, list[str]] = {}
    for trial_id, ended in conn.execute(sa.select(_runs.c.trial_id, _runs.c.ended)):
        run_ends.setdefault(int(trial_id), []).append(str(ended))
    by_end: dict[str, list[int]] = {}
    for trial_id, error in rows:
        by_end.setdefault(_failure(error, run_ends.get(int(trial_id), [])), []).append(trial_id)
    for end, ids in by_end.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            op.execute(_trials.update().where(_trials.c.id.in_(chunk)).values(end_reason=end))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on every backend (SQLite >= 3.35), not a batch copy: SQLite's
    # batch drops and recreates zs_trials, and with foreign keys on that drop would cascade to
    # zs_epochs and zs_runs.
    op.drop_column("zs_trials", "end_reason")

"""The read queries whose cost must not grow with a study: what the read commands (``status``,
``list``, ``export``) ask of a study of any size, answered by the database (``ORDER BY ...
LIMIT``, ``GROUP BY``) instead of by loading every trial into a frame.

Each function takes a connection and the study's row id; :class:`study.store.Store` wraps them
(its ``ranked_complete``, ``latest_numbers``, ``trial_counts``, ``trial_nodes`` and
``run_layer_paths``).

Indexes: ``zs_trials`` has one index a study's trials are found by, the unique key
(``study_id``, ``number``). The ranking filters a study's trials through it and sorts its
COMPLETE ones by ``best_value`` in the database (milliseconds at 10,000 trials); an index on
(``study_id``, ``state``, ``best_value``, ``number``) would answer it without the sort. The
latest trials walk the unique key backwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dashboards import Col, TrialState

from ._models import RunRow, TrialRow

__all__ = ["latest_numbers", "ranked_complete", "run_layer_paths", "trial_counts", "trial_nodes"]

# zs_trials' SQL columns that say how a trial ended (migrations 0002 and 0004): a database an
# older version made and no run upgraded may lack them.
END_COLUMNS = ("end_reason", Col.RETIRED)  # frame-contract: not a column (SQL columns)
# zs_runs' SQL columns of migration 0005 (the layer path a run took).
PATH_COLUMNS = (Col.LAYER_PATH, Col.LAYER_FALLBACK)


def _finite(column: Any) -> Any:
    """``column`` holds a finite number: not NULL (SQLite stores NaN as NULL), not NaN (which
    PostgreSQL orders above infinity) and not infinite."""
    return sa.and_(column.is_not(None), column < math.inf, column > -math.inf)


def ranked_complete(conn: sa.Connection, study_id: int, top: int) -> list[int]:
    """The numbers of the ``top`` COMPLETE trials with a finite score, best (lowest) first,
    ties by number: ``study.optuna_study.best_complete``'s ranking (a stable sort of Optuna's
    trials by value), asked of the database."""
    table = TrialRow.__table__
    query = (
        sa.select(table.c.number)
        .where(
            table.c.study_id == study_id,
            table.c.state == TrialState.COMPLETE.value,
            _finite(table.c.best_value),
        )
        .order_by(table.c.best_value, table.c.number)
        .limit(max(0, int(top)))
    )
    return [int(number) for number in conn.execute(query).scalars()]


def latest_numbers(conn: sa.Connection, study_id: int, count: int) -> list[int]:
    """The numbers of the ``count`` trials asked last (the highest numbers), newest first."""
    table = TrialRow.__table__
    query = (
        sa.select(table.c.number)
        .where(table.c.study_id == study_id)
        .order_by(table.c.number.desc())
        .limit(max(0, int(count)))
    )
    return [int(number) for number in conn.execute(query).scalars()]


def trial_counts(
    conn: sa.Connection, study_ids: dict[int, str], present: Sequence[str]
) -> list[dict[str, Any]]:
    """Trials per study, state and end (``end_reason`` and ``retired``, of those in
    ``present``): one row per group, with its study's name (``study_ids`` maps row id to name)
    and its number of trials under ``"trials"``."""
    table = TrialRow.__table__
    keys = [table.c.study_id, table.c.state, *(table.c[c] for c in END_COLUMNS if c in present)]
    query = (
        sa.select(*keys, sa.func.count().label("trials"))
        .where(table.c.study_id.in_(list(study_ids)))
        .group_by(*keys)
        .order_by(*keys)
    )
    rows = []
    for row in conn.execute(query).mappings():
        out = {Col.STUDY: study_ids[row["study_id"]]}
        out.update({key.name: row[key.name] for key in keys[1:]})
        out["trials"] = int(row["trials"])
        rows.append(out)
    return rows


def trial_nodes(conn: sa.Connection, study_id: int, most: int) -> list[str]:
    """Up to ``most`` of the distinct nodes the study's trials ran on (as stored, sorted)."""
    table = TrialRow.__table__
    query = (
        sa.select(table.c.node)
        .where(table.c.study_id == study_id, table.c.node.is_not(None))
        .distinct()
        .order_by(table.c.node)
        .limit(max(0, int(most)))
    )
    return [str(node) for node in conn.execute(query).scalars()]


def run_layer_paths(
    conn: sa.Connection, study_id: int, present: Sequence[str]
) -> dict[str, list[Any]]:
    """Each run's layer path and fallback reason (the columns of :data:`PATH_COLUMNS` in
    ``present``), in the runs frame's order (trial number, seed): two plain columns, not the
    whole runs frame."""
    columns = [c for c in PATH_COLUMNS if c in present]
    out: dict[str, list[Any]] = {c: [] for c in columns}
    if not columns:
        return out
    runs = RunRow.__table__
    trials = TrialRow.__table__
    query = (
        sa.select(*(runs.c[c] for c in columns))
        .join(trials, trials.c.id == runs.c.trial_id)
        .where(trials.c.study_id == study_id)
        .order_by(trials.c.number, runs.c.seed)
    )
    for row in conn.execute(query):
        for column, value in zip(columns, row, strict=True):
            out[column].append(value)
    return out

"""Optuna's RDB storage with a trial loader that builds ``FrozenTrial`` objects from six plain
SQL queries instead of SQLAlchemy ORM objects.

Why: every driver's first ``ask`` (TPE reads every finished trial) and every full read loads the
whole study through ``RDBStorage._get_trials``, which materialises an ORM object per trial, per
parameter, per value, per intermediate value and per attribute, and tears the session down
afterwards. At 10,000 trials that is seconds before the first trial starts
(benchmarks/study_scale.py). The same rows read as tuples build the same trials several times
faster (tests/study/test_optuna_trials.py compares every field with Optuna's own loader, on
SQLite and PostgreSQL).

Only ``study.optuna_study`` imports this module: it owns Optuna, and this is where its private
``_get_trials`` (the one method ``_CachedStorage`` calls to read trials from the database) and
its ``_rdb.models`` tables are used. Writes, caching and everything else are Optuna's own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Container, Iterable
from typing import Any

import optuna
import sqlalchemy as sa
from optuna import distributions
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

__all__ = ["FastTrialsRDBStorage"]

_intermediate = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value


class FastTrialsRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose trial reads skip the ORM; the trials it returns are equal to
    Optuna's (``FrozenTrial.__eq__``), field by field."""

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        # The same selection as Optuna's: trials of the study (in ``states``) whose id is
        # above ``trial_id_greater_than``, plus the ``included_trial_ids`` at or below it
        # (the unfinished trials ``_CachedStorage`` reads again).
        included = [i for i in included_trial_ids if i <= trial_id_greater_than]
        trial = models.TrialModel.__table__
        selection = trial.c.study_id == study_id
        if states is not None:
            assert isinstance(states, Iterable)  # Container in the base class's signature
            selection = sa.and_(selection, trial.c.state.in_(list(states)))
        if trial_id_greater_than > -1:
            newer = trial.c.trial_id > trial_id_greater_than
            selection = sa.and_(
                selection, sa.or_(trial.c.trial_id.in_(included), newer) if included else newer
            )
        ids = sa.select(trial.c.trial_id).where(selection).scalar_subquery()

        # One transaction: on SQLite a consistent snapshot. On PostgreSQL (read committed) a
        # child row may be newer than its trial row, exactly as with Optuna's selectinload.
        with self.engine.connect() as conn:
            models_study = models.StudyModel.__table__
            if (
                conn.execute(
                    sa.select(models_study.c.study_id).where(models_study.c.study_id == study_id)
                ).first()
                is None
            ):
                raise KeyError(f"No study with study_id {study_id} exists.")
            rows = conn.execute(
                sa.select(
                    trial.c.trial_id,
                    trial.c.number,
                    trial.c.state,
                    trial.c.datetime_start,
                    trial.c.datetime_complete,
                )
                .where(selection)
                .order_by(trial.c.trial_id)
            ).all()
            if not rows:
                return []
            params = _children(conn, models.TrialParamModel, ids, "param_id")
            values = _children(conn, models.TrialValueModel, ids, "trial_value_id")
            steps = _children(
                conn, models.TrialIntermediateValueModel, ids, "trial_intermediate_value_id"
            )
            user = _children(conn, models.TrialUserAttributeModel, ids, "trial_user_attribute_id")
            system = _children(
                conn, models.TrialSystemAttributeModel, ids, "trial_system_attribute_id"
            )

        # Every trial of a study shares a handful of distributions: parse each JSON once.
        parsed: dict[str, distributions.BaseDistribution] = {}

        def distribution(text: str) -> distributions.BaseDistribution:
            found = parsed.get(text)
            if found is None:
                found = parsed[text] = distributions.json_to_distribution(text)
            return found

        trials = []
        for trial_id, number, state, started, completed in rows:
            trial_params = params.get(trial_id, ())
            trial_values = values.get(trial_id)
            objective_values: list[float] | None = None
            if trial_values:
                objective_values = [0.0] * len(trial_values)
                for row in trial_values:
                    objective_values[row.objective] = models.TrialValueModel.stored_repr_to_value(
                        row.value, row.value_type
                    )
            trials.append(
                FrozenTrial(
                    number=number,
                    state=state,
                    value=None,
                    values=objective_values,
                    datetime_start=started,
                    datetime_complete=completed,
                    params={
                        p.param_name: distribution(p.distribution_json).to_external_repr(
                            p.param_value
                        )
                        for p in trial_params
                    },
                    distributions={
                        p.param_name: distribution(p.distribution_json) for p in trial_params
                    },
                    user_attrs={a.key: json.loads(a.value_json) for a in user.get(trial_id, ())},
                    system_attrs={
                        a.key: json.loads(a.value_json) for a in system.get(trial_id, ())
                    },
                    intermediate_values={
                        s.step: _intermediate(s.intermediate_value, s.intermediate_value_type)
                        for s in steps.get(trial_id, ())
                    },
                    trial_id=trial_id,
                )
            )
        return trials


def _children(
    conn: sa.Connection, model: Any, trial_ids: Any, order: str
) -> dict[int, list[sa.Row[Any]]]:
    """The rows of one of a trial's child tables for the selected trials, by trial id, in the
    order they were written (Optuna sorts parameters by ``param_id`` too)."""
    table = model.__table__
    grouped: dict[int, list[sa.Row[Any]]] = defaultdict(list)
    for row in conn.execute(
        sa.select(table).where(table.c.trial_id.in_(trial_ids)).order_by(table.c[order])
    ):
        grouped[row.trial_id].append(row)
    return grouped

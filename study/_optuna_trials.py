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

import contextlib
import gc
import json
from collections import defaultdict
from collections.abc import Container, Iterable, Iterator
from typing import Any

import optuna
import sqlalchemy as sa
from optuna import distributions
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

__all__ = ["FastTrialsRDBStorage"]

_intermediate = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
_value = models.TrialValueModel.stored_repr_to_value


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """The cyclic garbage collector paused (if it ran) for the block; reference counting still
    frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class FastTrialsRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose trial reads skip the ORM; the trials it returns are equal to
    Optuna's (``FrozenTrial.__eq__``), field by field."""

    # Building 10,000 trials makes some 200,000 objects that all live on: the collector's
    # passes over them were a third to a half of the load (measured), and find nothing.
    @_no_collection()
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
            params = _children(
                conn,
                models.TrialParamModel,
                ids,
                "param_id",
                ("param_name", "param_value", "distribution_json"),
            )
            values = _children(
                conn,
                models.TrialValueModel,
                ids,
                "trial_value_id",
                ("objective", "value", "value_type"),
            )
            steps = _children(
                conn,
                models.TrialIntermediateValueModel,
                ids,
                "trial_intermediate_value_id",
                ("step", "intermediate_value", "intermediate_value_type"),
            )
            user = _children(
                conn,
                models.TrialUserAttributeModel,
                ids,
                "trial_user_attribute_id",
                ("key", "value_json"),
            )
            system = _children(
                conn,
                models.TrialSystemAttributeModel,
                ids,
                "trial_system_attribute_id",
                ("key", "value_json"),
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
            trial_params = [
                (name, value, distribution(text)) for name, value, text in params[trial_id]
            ]
            objective_values: list[float] | None = None
            if trial_id in values:
                objective_values = [0.0] * len(values[trial_id])
                for objective, value, value_type in values[trial_id]:
                    objective_values[objective] = _value(value, value_type)
            trials.append(
                FrozenTrial(
                    number=number,
                    state=state,
                    value=None,
                    values=objective_values,
                    datetime_start=started,
                    datetime_complete=completed,
                    params={name: d.to_external_repr(v) for name, v, d in trial_params},
                    distributions={name: d for name, _, d in trial_params},
                    user_attrs={key: _json(text) for key, text in user[trial_id]},
                    system_attrs={key: _json(text) for key, text in system[trial_id]},
                    intermediate_values={
                        step: _intermediate(value, kind) for step, value, kind in steps[trial_id]
                    },
                    trial_id=trial_id,
                )
            )
        return trials


def _children(
    conn: sa.Connection, model: Any, trial_ids: Any, order: str, columns: tuple[str, ...]
) -> defaultdict[int, list[tuple[Any, ...]]]:
    """``columns`` of one of a trial's child tables for the selected trials, by trial id, in
    the order they were written (Optuna sorts parameters by ``param_id`` too)."""
    table = model.__table__
    grouped: defaultdict[int, list[tuple[Any, ...]]] = defaultdict(list)
    result = conn.execute(
        sa.select(table.c.trial_id, *(table.c[c] for c in columns))
        .where(table.c.trial_id.in_(trial_ids))
        .order_by(table.c[order])
    )
    for trial_id, *rest in result.all():  # one fetch: row-by-row iteration costs twice as much
        grouped[trial_id].append(tuple(rest))
    return grouped


_SCALARS: dict[str, Any] = {}


def _json(text: str) -> Any:
    """``json.loads``, remembering scalars (a driver id, a seed: the same text in thousands of
    trials). Lists and dicts are parsed every time: each trial gets its own, as from Optuna."""
    found = _SCALARS.get(text, _SCALARS)
    if found is not _SCALARS:
        return found
    value = json.loads(text)
    if not isinstance(value, (list, dict)) and len(_SCALARS) < 100_000:
        _SCALARS[text] = value
    return value

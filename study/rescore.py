"""Bring a study written before the one score (study.score) to it.

Studies run before this definition told Optuna the seeds' mean at the last epoch, reported the
seeds' mean per epoch as intermediate values, stored the minimum of that mean curve as
``zs_trials.best_value`` and the last epoch's per-seed values as ``seed_values``. Rescoring
recomputes all of them from the epochs table (the facts: every seed's validation value at every
epoch), writes the per-seed runs (``zs_runs``) with why each ended, and marks the study
(``keys.SCORE_DEFINITION``), so TPE, optuna-dashboard, ``status``, ``export`` and the report
read one number. It is idempotent: a second pass writes the same values.

``run`` rescores a study it continues; ``zoneout-study db upgrade`` rescores every study of a
database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from dashboards import Col
from study import keys
from study import optuna_study as ostudy
from study.score import RunEnd, failure_end, run_record, score, score_at, score_curve, seed_best
from study.store import Store

__all__ = ["SCORE_DEFINITION", "RescoreResult", "mark_scored", "needs_rescore", "rescore_study"]

#: The value of ``keys.SCORE_DEFINITION`` on a study whose values follow study.score.
SCORE_DEFINITION = "mean over seeds of each seed's best validation value (1)"


@dataclass(frozen=True)
class RescoreResult:
    study: str
    trials: int  # finished trials rewritten
    changed: list[tuple[int, float | None, float | None]]  # (number, old value, new value)

    def line(self) -> str:
        moved = [c for c in self.changed if c[1] != c[2]]
        biggest = max(
            (abs(new - old) for _, old, new in moved if old is not None and new is not None),
            default=0.0,
        )
        return (
            f"study {self.study!r}: {self.trials} finished trials rescored to the one score "
            f"({len(moved)} values changed, by at most {biggest:.4f})"
        )


def needs_rescore(study: optuna.Study) -> bool:
    """True for a study with finished trials whose values follow an older definition."""
    if ostudy.study_attrs(study).get(keys.SCORE_DEFINITION) == SCORE_DEFINITION:
        return False
    return any(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        for t in ostudy.trials(study)
    )


def mark_scored(study: optuna.Study) -> None:
    ostudy.set_study_attrs(study, {keys.SCORE_DEFINITION: SCORE_DEFINITION})


def rescore_study(url: str, name: str, store: Store) -> RescoreResult:
    """Rescore study ``name`` from its epochs table (see the module docstring)."""
    study = ostudy.load_study(url, name)
    epochs = store.epochs_frame(name)
    curves = _curves(epochs)
    recorded = _recorded_ends(store.runs_frame(name))
    max_epochs = int(ostudy.study_attrs(study).get(keys.MAX_EPOCHS) or 0)
    rewrites: dict[int, ostudy.FinishedValues] = {}
    changed: list[tuple[int, float | None, float | None]] = []
    for trial in ostudy.trials(study):
        if not trial.state.is_finished():
            continue
        seeds = list(trial.user_attrs.get(keys.SEEDS) or sorted(curves.get(trial.number, {})))
        seed_curves = [curves.get(trial.number, {}).get(seed, {}) for seed in seeds]
        if not seed_curves:
            continue
        # A run converged only where the store says so (a study run with ``patience``): before
        # patience existed no run stopped on its own, and a database that old has no run records.
        stored_ends = [recorded.get((trial.number, seed)) for seed in seeds]
        done = [end == RunEnd.CONVERGED for end in stored_ends]
        new_value = _value(trial, seed_curves, done)
        intermediate = score_curve(seed_curves, done)
        attrs: dict[str, Any] = {}
        if keys.SEED_VALUES in trial.user_attrs:
            attrs[keys.SEED_VALUES] = [seed_best(curve) for curve in seed_curves]
        rewrites[trial.number] = ostudy.FinishedValues(
            value=new_value,
            intermediate={s: v for s, v in intermediate.items() if s in trial.intermediate_values},
            user_attrs=attrs,
        )
        if trial.state != TrialState.FAIL:
            changed.append((trial.number, trial.value, new_value))
        ends = [
            RunEnd.CONVERGED if finished else _run_end(trial, curve, max_epochs)
            for curve, finished in zip(seed_curves, done, strict=True)
        ]
        best = _score_so_far(seed_curves, done)
        store.upsert_trial(name, trial.number, best_value=_finite(best))
        store.record_runs(
            name,
            trial.number,
            [run_record(*run) for run in zip(seeds, seed_curves, ends, strict=True)],
        )
    done_count = ostudy.rewrite_finished_values(study, rewrites)
    mark_scored(study)
    return RescoreResult(name, done_count, changed)


def _curves(epochs: pd.DataFrame) -> dict[int, dict[int, dict[int, float]]]:
    """number -> seed -> epoch -> validation value (finite or NaN)."""
    out: dict[int, dict[int, dict[int, float]]] = {}
    for row in epochs.itertuples(index=False):
        value = row.valid_metric
        metric = float(value) if value is not None and not pd.isna(value) else math.nan
        out.setdefault(int(row.number), {}).setdefault(int(row.seed), {})[int(row.epoch)] = metric
    return out


def _recorded_ends(runs: pd.DataFrame) -> dict[tuple[int, int], RunEnd]:
    """(number, seed) -> why the run ended, as the store recorded it (empty on old databases)."""
    out: dict[tuple[int, int], RunEnd] = {}
    for number, seed, ended in zip(runs[Col.NUMBER], runs[Col.SEED], runs[Col.ENDED], strict=True):
        try:
            out[(int(number), int(seed))] = RunEnd(ended)
        except ValueError:  # a word this version does not know: treat the run as not converged
            continue
    return out


def _value(trial: FrozenTrial, curves: list[Mapping[int, float]], done: list[bool]) -> float | None:
    if trial.state == TrialState.COMPLETE:
        return score(curves)
    if trial.state == TrialState.PRUNED:
        # Optuna's value of a pruned trial is its last intermediate value.
        last = max(trial.intermediate_values, default=None)
        return score_at(curves, last, done) if last is not None else None
    return None


def _score_so_far(curves: list[Mapping[int, float]], done: list[bool]) -> float | None:
    """The score at the trial's last epoch; a run that converged (``done``) holds its best
    beyond its own last epoch, as the live score does (a continued trial's seeds can stop at
    different epochs)."""
    curve = score_curve(curves, done)
    return curve[max(curve)] if curve else None


def _run_end(trial: FrozenTrial, curve: Mapping[int, float], max_epochs: int) -> RunEnd:
    if trial.state == TrialState.PRUNED:
        return RunEnd.PRUNED
    if trial.state == TrialState.FAIL:
        if ostudy.is_retired(trial):
            return RunEnd.INTERRUPTED
        return failure_end(trial.user_attrs.get(keys.FAIL_REASON))
    last = max(curve, default=0)
    return RunEnd.BUDGET if not max_epochs or last >= max_epochs else RunEnd.FAILED


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None

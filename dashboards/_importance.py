"""Parameter importance through Optuna's evaluators, from a trials frame or an optuna Study."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from ._common import PARAM_PREFIX, Direction, is_log_param, param_columns

__all__ = [
    "ParamImportance",
    "build_optuna_study",
    "infer_distributions",
    "parameter_importance",
]

Evaluator = Literal["ped-anova", "fanova"]
_STATES = {
    "COMPLETE": TrialState.COMPLETE,
    "PRUNED": TrialState.PRUNED,
    "FAIL": TrialState.FAIL,
    "RUNNING": TrialState.RUNNING,
}


@dataclass(frozen=True)
class ParamImportance:
    """Importances (summing to 1), most important first; empty with a reason when unavailable."""

    importances: dict[str, float]
    evaluator: str
    n_trials: int
    reason: str | None = None

    @property
    def most_important(self) -> str | None:
        return next(iter(self.importances), None)


def infer_distributions(trials: pd.DataFrame) -> dict[str, BaseDistribution]:
    """Optuna distributions of the ``param_*`` columns from their observed values.

    Integers -> IntDistribution, floats -> FloatDistribution (log when :func:`is_log_param`),
    anything else (strings, booleans) -> CategoricalDistribution of the sorted observed values.
    """
    dists: dict[str, BaseDistribution] = {}
    for name in param_columns(trials):
        col = trials[PARAM_PREFIX + name].dropna()
        if col.empty:
            continue
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            choices = sorted({_plain(v) for v in col}, key=str)
            dists[name] = CategoricalDistribution(choices)
            continue
        lo, hi = float(col.min()), float(col.max())
        log = is_log_param(name, col.to_numpy())
        if pd.api.types.is_integer_dtype(col) or (np.all(col == np.round(col)) and hi - lo >= 2):
            dists[name] = IntDistribution(int(lo), int(hi), log=log and lo >= 1)
        else:
            if hi <= lo:
                hi = lo + (abs(lo) * 1e-9 or 1e-12)
            dists[name] = FloatDistribution(lo, hi, log=log)
    return dists


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def build_optuna_study(
    trials: pd.DataFrame,
    *,
    direction: Direction = "minimize",
    value: str = "best_value",
    study_name: str = "zoneout-study",
    epochs: pd.DataFrame | None = None,
    storage: optuna.storages.BaseStorage | str | None = None,
) -> optuna.Study:
    """An Optuna study (in memory unless ``storage`` is given) holding the frame's trials.

    COMPLETE trials with a finite ``value`` become COMPLETE; PRUNED / FAIL / RUNNING keep their
    state (PRUNED with their last value). With ``epochs``, ``valid_metric`` per epoch becomes the
    intermediate values (first seed of each trial).
    """
    dists = infer_distributions(trials)
    inter: dict[int, dict[int, float]] = {}
    if epochs is not None and len(epochs):
        e = epochs.sort_values(["number", "epoch"])
        if "seed" in e:
            first = e.groupby("number")["seed"].transform("first")
            e = e[(e["seed"] == first) | first.isna()]
        for num, grp in e.groupby("number"):
            inter[int(num)] = {
                int(s): float(v)
                for s, v in zip(grp["epoch"], grp["valid_metric"], strict=True)
                if math.isfinite(float(v))
            }
    frozen = []
    pcols = {n: PARAM_PREFIX + n for n in dists}
    records = trials.to_dict("records")
    for rec in records:
        state = _STATES.get(str(rec.get("state", "COMPLETE")), TrialState.COMPLETE)
        v = rec.get(value)
        v = float(v) if v is not None and pd.notna(v) else None
        if state == TrialState.COMPLETE and (v is None or not math.isfinite(v)):
            state = TrialState.FAIL
        params, pd_used = {}, {}
        for n, c in pcols.items():
            pv = rec.get(c)
            if pv is None or (isinstance(pv, float) and math.isnan(pv)):
                continue
            d = dists[n]
            pv = _plain(pv)
            if isinstance(d, IntDistribution):
                pv = int(pv)
            elif isinstance(d, FloatDistribution):
                pv = float(pv)
            params[n], pd_used[n] = pv, d
        user_attrs = {}
        if "seed" in rec and rec["seed"] is not None and pd.notna(rec["seed"]):
            user_attrs["seed"] = int(rec["seed"])
        num = rec.get("number")
        frozen.append(
            optuna.trial.create_trial(
                state=state,
                value=v if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
                params=params,
                distributions=pd_used,
                user_attrs=user_attrs,
                intermediate_values=inter.get(int(num), {}) if num is not None else {},
            )
        )
    study = optuna.create_study(
        study_name=study_name, direction=direction, storage=storage, load_if_exists=False
    )
    study.add_trials(frozen)
    return study


def parameter_importance(
    source: pd.DataFrame | optuna.Study,
    *,
    evaluator: Evaluator = "ped-anova",
    direction: Direction = "minimize",
    value: str = "best_value",
    params: list[str] | None = None,
    seed: int = 0,
    max_trials: int = 2000,
) -> ParamImportance:
    """Importance of each searched parameter for ``value`` using Optuna's evaluators.

    ``source``: a trials frame (an in-memory study is built from it) or an ``optuna.Study``.
    ``evaluator``: 'ped-anova' (PedAnovaImportanceEvaluator, Optuna's default) or 'fanova'.
    From a frame only COMPLETE trials are used, a seeded random ``max_trials`` of them when there
    are more (importances are stable well below that, and building the study is the cost).
    """
    if isinstance(source, optuna.Study):
        study = source
    else:
        done = source[source["state"].astype(str) == "COMPLETE"] if "state" in source else source
        if len(done) > max_trials:  # seeded subsample keeps the evaluators fast
            done = done.sample(n=max_trials, random_state=seed)
        study = build_optuna_study(done, direction=direction, value=value)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return ParamImportance({}, evaluator, len(complete), "fewer than 2 complete trials")
    if evaluator == "fanova":
        ev: optuna.importance.BaseImportanceEvaluator = optuna.importance.FanovaImportanceEvaluator(
            seed=seed
        )
    elif evaluator == "ped-anova":
        ev = optuna.importance.PedAnovaImportanceEvaluator()
    else:
        raise ValueError("evaluator must be 'ped-anova' or 'fanova'")
    try:
        imp = optuna.importance.get_param_importances(study, evaluator=ev, params=params)
    except (ValueError, RuntimeError) as exc:
        return ParamImportance({}, evaluator, len(complete), str(exc))
    return ParamImportance({k: float(v) for k, v in imp.items()}, evaluator, len(complete))

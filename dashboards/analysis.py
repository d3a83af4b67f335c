"""Sensitivity analysis as pure data (no plotting).

Every function returns a frozen dataclass that :mod:`dashboards.figures` renders. The one-call
:func:`analyze` computes everything the report needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import (
    Direction,
    MetricInfo,
    categorical_params,
    is_log_param,
    metric_info,
    numeric_params,
    param_columns,
)
from ._curves import LearningCurves, asha_rungs, learning_curves, stop_rung
from ._gp import BINS_1D, BINS_2D, MAX_EXACT_POINTS
from ._importance import (
    ParamImportance,
    build_optuna_study,
    infer_distributions,
    parameter_importance,
)
from ._marginal import (
    GP_MIN_POINTS,
    SMOOTH_MIN_POINTS,
    MarginalEffect,
    SeedSpread,
    bootstrap_ci,
    marginal_effect,
    marginal_effects,
    seed_spread,
)
from ._summary import summarize
from ._surface import SURFACE_MIN_POINTS, ResponseSurface, response_surface

__all__ = [
    "BINS_1D",
    "BINS_2D",
    "GP_MIN_POINTS",
    "MAX_EXACT_POINTS",
    "SMOOTH_MIN_POINTS",
    "SURFACE_MIN_POINTS",
    "Direction",
    "LearningCurves",
    "MarginalEffect",
    "MetricInfo",
    "ParamImportance",
    "ResponseSurface",
    "SeedSpread",
    "StudyAnalysis",
    "analyze",
    "asha_rungs",
    "bootstrap_ci",
    "build_optuna_study",
    "categorical_params",
    "infer_distributions",
    "is_log_param",
    "learning_curves",
    "marginal_effect",
    "marginal_effects",
    "metric_info",
    "numeric_params",
    "param_columns",
    "parameter_importance",
    "response_surface",
    "seed_spread",
    "stop_rung",
    "summarize",
]


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything the report shows, as data."""

    study_name: str
    metric: MetricInfo
    marginals: dict[str, MarginalEffect]
    spread: SeedSpread
    surface: ResponseSurface | None
    curves: LearningCurves
    """All trials at their last epoch (``budget='last'``)."""
    curves_full: LearningCurves
    """Full-budget trials only (``budget='full'``)."""
    importance: ParamImportance
    summary_markdown: str


def analyze(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    metric: str,
    max_epochs: int,
    direction: Direction = "minimize",
    study_name: str = "study",
    grace_period: int | None = None,
    reduction_factor: float | None = None,
    importance_evaluator: str = "ped-anova",
    value: str = "best_value",
    seed: int = 0,
) -> StudyAnalysis:
    """Run every analysis on the store's frames (see the module docs for each piece)."""
    info = metric_info(metric, direction)
    spread = seed_spread(trials, value=value, direction=direction, seed=seed)
    nums = numeric_params(trials)
    marginals = {
        n: marginal_effect(trials, n, value=value, direction=direction, spread=spread, seed=seed)
        for n in nums
    }
    surface = None
    if "zoneout_cell" in nums and "zoneout_hidden" in nums:
        surface = response_surface(trials, value=value, direction=direction, seed=seed)
    elif len(nums) >= 2:
        surface = response_surface(trials, nums[0], nums[1], value=value, direction=direction)
    kw = dict(max_epochs=max_epochs, grace_period=grace_period, reduction_factor=reduction_factor)
    curves = learning_curves(trials, epochs, budget="last", **kw)  # type: ignore[arg-type]
    curves_full = learning_curves(trials, epochs, budget="full", **kw)  # type: ignore[arg-type]
    importance = parameter_importance(
        trials,
        evaluator=importance_evaluator,  # type: ignore[arg-type]
        direction=direction,
        value=value,
        seed=seed,
    )
    summary = summarize(
        trials,
        metric=info,
        study_name=study_name,
        marginals=marginals,
        surface=surface,
        importance=importance,
        curves=curves,
        spread=spread,
        value=value,
    )
    return StudyAnalysis(
        study_name, info, marginals, spread, surface, curves, curves_full, importance, summary
    )

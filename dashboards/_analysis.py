"""Everything the report shows, as data: :func:`analyze` runs each analysis on the store's frames.

Each figure reads the runs at one epoch (:mod:`dashboards._runs`): the full budget when enough
configurations reached it, else the deepest epoch that enough reached (studies stopped early by
ASHA). The summary says which epoch each figure used.

A study with too little to draw (every trial failed, one trial, only pruned ones) is analysed
all the same: each analysis says why it has nothing, :attr:`StudyAnalysis.figures` names only
the figures the data supports, and :attr:`StudyAnalysis.figure_note` says why there are none
(or only some), next to the table of the trials that did not complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from ._common import UNNAMED_STUDY, Direction, MetricInfo, metric_info, numeric_params
from ._configs import ConfigTable, config_table, find_baseline
from ._curves import LearningCurves, learning_curves
from ._frame import PARAM_PREFIX, Col, check_frames
from ._importance import ParamImportance, parameter_importance
from ._marginal import Marginal, marginal
from ._model import ModelFit, fit_model, gp_min_configs
from ._outcomes import TrialOutcomes, trial_outcomes
from ._runs import EpochChoice, StudyRuns, pick_epoch, study_runs
from ._summary import summarize
from ._surface import Surface, response_surface

__all__ = ["StudyAnalysis", "analyze", "figure_names", "figure_note"]

#: The configuration table is read at the deepest epoch at least this many configurations reached.
TABLE_MIN_CONFIGS = 3


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything the report shows, as data."""

    study_name: str
    metric: MetricInfo
    table: ConfigTable
    """Per-configuration means over seeds and paired differences to the baseline."""
    surface: Surface | None
    marginals: dict[str, Marginal]
    curves: LearningCurves
    """Every run, each to its last epoch."""
    importance: ParamImportance
    param_ranges: dict[str, tuple[float, float]]
    """Observed range of each numeric parameter: one colour scale per parameter everywhere."""
    summary_markdown: str
    outcomes: TrialOutcomes | None = None
    """How each trial ended, and the table of those that did not complete."""
    figures: tuple[str, ...] = field(default_factory=tuple)
    """Names of the figures the data supports, in display order (see :func:`figure_names`)."""
    figure_note: str | None = None
    """Why there is no figure, or only some (no trial completed, ...); None when trials
    completed and there are figures."""


def _table_epoch(runs: StudyRuns, baseline_trial: int | None) -> EpochChoice:
    """Deepest epoch that TABLE_MIN_CONFIGS configurations, the baseline among them, reached."""
    total = runs.runs["config"].nunique()
    need = min(TABLE_MIN_CONFIGS, max(total, 1))
    base, _ = find_baseline(runs.runs, runs.params, trial=baseline_trial)
    counts = runs.counts()
    for _, row in counts.iloc[::-1].iterrows():
        k = int(row[Col.EPOCH])
        if row["n_configs"] < need:
            continue
        if base is not None and not runs.read_at(k)[runs.runs["config"] == base].any():
            continue
        return EpochChoice(k, runs.max_epochs, int(row["n_configs"]), int(row["n_runs"]))
    return pick_epoch(runs, need)


def _strongest(table: ConfigTable, params: list[str]) -> str | None:
    """The parameter whose values move the per-configuration means most (the learning curves
    are coloured by it)."""
    c = table.configs
    if not params or c.empty:
        return params[0] if params else None
    spread = {p: float(np.ptp(c.groupby(PARAM_PREFIX + p)["mean"].mean())) for p in params}
    return max(params, key=lambda p: spread[p])


def figure_names(
    surface: Surface | None,
    marginals: dict[str, Marginal],
    table: ConfigTable,
    curves: LearningCurves,
    importance: ParamImportance,
) -> tuple[str, ...]:
    """The figures there is something to draw for, in display order: a figure is left out,
    not drawn empty (the summary says why)."""
    names: list[str] = []
    if surface is not None and len(surface.points):
        names.append("surface")
    names += [f"marginal-{p}" for p, m in marginals.items() if len(m.configs)]
    if (
        table.baseline is not None
        and "diff_n" in table.configs
        and (table.configs["diff_n"].fillna(0) > 0).sum() > 1
    ):
        names.append("differences")
    if len(curves.final):
        names.append("learning-curves")
    if importance.importances:
        names.append("importance")
    return tuple(names)


def figure_note(
    outcomes: TrialOutcomes, figures: tuple[str, ...], table: ConfigTable
) -> str | None:
    """Why the report has no figure, or only some, in one sentence (lower-case start, no final
    stop). None when trials completed and there are figures."""
    if outcomes.total == 0:
        return "no figure: the study has no trial yet"
    if outcomes.complete:
        if figures:
            return None
        if table.configs.empty:
            return "no figure: no complete trial has a validation value"
        return (
            "no figure: no numeric searched parameter took two values, and no per-epoch "
            "values were stored to draw learning curves from"
        )
    what = f"no trial completed: {outcomes.text()} (see the table of trials)"
    need = (
        "need at least one trial that completed, or was stopped early by the scheduler, with "
        "a validation value"
    )
    if not figures:
        return f"no figure: {what}; figures {need}"
    if table.configs.empty:
        return f"learning curves only: {what}; the other figures {need}"
    return (
        f"{what}; the figures read the runs the scheduler stopped early, {table.epoch.label}, "
        "not results at the full budget"
    )


def analyze(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    metric: str,
    max_epochs: int,
    direction: Direction = "minimize",
    study_name: str = UNNAMED_STUDY,
    grace_period: int | None = None,
    reduction_factor: float | None = None,
    study: optuna.Study | list[FrozenTrial] | None = None,
    baseline_trial: int | None = None,
    seed: int = 0,
    ends: pd.DataFrame | None = None,
    importance: ParamImportance | None = None,
) -> StudyAnalysis:
    """Analyse a study's frames (the store's ``trials_frame`` and ``epochs_frame``).

    ``study``: the real Optuna study, or its complete trials (or None): importance is read
    from it and nothing else. ``importance``: an importance computed before from the same
    trials (kept by :func:`build_report`'s cache); used as it is, ``study`` is not read.
    ``baseline_trial``: the trial whose configuration the others are compared with, seed by
    seed; by default the unregularized configuration when the study ran it.
    ``ends``: the store's runs frame (why each run ended); converged runs keep their best.
    Trials the caller's service retired itself (the frame's ``retired`` column: cut off by the
    run, continued by its next run) are counted as interrupted, not failed.
    """
    check_frames("dashboards.analyze", trials=trials, epochs=epochs, runs=ends)
    info = metric_info(metric, direction)
    runs = study_runs(trials, epochs, max_epochs=max_epochs, ends=ends)
    nums = [p for p in numeric_params(trials) if p in runs.params]
    table_epoch = _table_epoch(runs, baseline_trial)
    table = config_table(
        runs.at(table_epoch.epoch),
        table_epoch,
        runs.params,
        direction=direction,
        baseline_trial=baseline_trial,
    )
    model_epoch = pick_epoch(runs, gp_min_configs(len(nums)))
    model_runs = runs.at(model_epoch.epoch)
    model: ModelFit | None = fit_model(model_runs, nums, model_epoch, seed=seed) if nums else None
    model_table = (
        table
        if model_epoch.epoch == table.epoch.epoch
        else config_table(
            model_runs, model_epoch, runs.params, direction=direction, baseline_trial=baseline_trial
        )
    )
    surface = None
    if len(nums) >= 2:
        x, y = (
            ("zoneout_cell", "zoneout_hidden")
            if {"zoneout_cell", "zoneout_hidden"} <= set(nums)
            else (nums[0], nums[1])
        )
        surface = response_surface(model_table, model, x, y, direction=direction)
    marginals = {}
    for p in nums:
        others = [o for o in nums if o != p]
        marginals[p] = marginal(
            model_table, model, p, color_param=others[0] if others else None, direction=direction
        )
    color = _strongest(table, nums)
    curves = learning_curves(
        trials,
        epochs,
        max_epochs=max_epochs,
        budget="last",
        color_param=color,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
        ends=ends,
    )
    if importance is None:
        importance = parameter_importance(study)
    ranges = {}
    for p in nums:
        col = pd.to_numeric(trials[PARAM_PREFIX + p], errors="coerce").dropna()
        ranges[p] = (float(col.min()), float(col.max()))
    outcomes = trial_outcomes(trials)
    figures = figure_names(surface, marginals, table, curves, importance)
    note = figure_note(outcomes, figures, table)
    summary = summarize(
        metric=info,
        study_name=study_name,
        table=table,
        surface=surface,
        marginals=marginals,
        importance=importance,
        curves=curves,
        outcomes=outcomes,
        figure_note=note,
        runs=ends,
    )
    return StudyAnalysis(
        study_name,
        info,
        table,
        surface,
        marginals,
        curves,
        importance,
        ranges,
        summary,
        outcomes=outcomes,
        figures=figures,
        figure_note=note,
    )

"""The report of a stored study: read the store's frames, analyse, write HTML/PNG, and save the
figures and a summary note into the Optuna study so optuna-dashboard shows them.
"""

from __future__ import annotations

import os

import optuna
import pandas as pd

from dashboards.optuna_bridge import save_figures_to_study
from dashboards.report import ReportResult, build_report

__all__ = ["per_seed_trials", "write_study_report"]


def per_seed_trials(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, seed) when a study ran repeats, so seed-to-seed spread is visible.

    The store keeps one row per configuration (Optuna trial) and every seed's epochs; a
    configuration run with one seed keeps its row as it is.
    """
    if epochs.empty or "seed" not in epochs.columns:
        return trials
    seeds_per_trial = epochs.groupby("number")["seed"].nunique()
    if (seeds_per_trial <= 1).all():
        return trials
    rows = []
    by_seed = epochs.sort_values("epoch").groupby(["number", "seed"])
    last = by_seed["valid_metric"].last()
    best = by_seed["valid_metric"].min()
    reached = by_seed["epoch"].max()
    for _, trial in trials.iterrows():
        number = trial["number"]
        if number not in seeds_per_trial.index or seeds_per_trial[number] <= 1:
            rows.append(trial.to_dict())
            continue
        for (trial_number, seed), final in last.items():
            if trial_number != number:
                continue
            row = trial.to_dict()
            row.update(
                seed=seed,
                final_value=final,
                best_value=best[(trial_number, seed)],
                epochs=int(reached[(trial_number, seed)]),
            )
            rows.append(row)
    return pd.DataFrame(rows)


def write_study_report(
    storage_url: str,
    study_name: str,
    out_dir: str | os.PathLike[str],
    *,
    png: bool = True,
    save_to_optuna: bool = True,
) -> ReportResult:
    """Write ``<study>-report.html`` (+ PNGs, summary) for a stored study into ``out_dir``."""
    from study.store import Store

    store = Store(storage_url)
    try:
        trials = store.trials_frame(study_name)
        epochs = store.epochs_frame(study_name)
        metric = str(store.study_spec(study_name).get("metric") or "")
    finally:
        store.close()
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    attrs = study.user_attrs
    metric = str(attrs.get("metric") or metric or "bpc")
    trials = trials[trials["state"].isin(["COMPLETE", "PRUNED", "FAIL"])]
    max_epochs = int(attrs.get("max_epochs") or (epochs["epoch"].max() if len(epochs) else 1))
    grace = attrs.get("grace_period")
    factor = attrs.get("reduction_factor")
    result = build_report(
        per_seed_trials(trials, epochs),
        epochs,
        study_name=study_name,
        metric=metric,
        direction="minimize",
        max_epochs=max_epochs,
        out_dir=out_dir,
        grace_period=int(grace) if grace is not None else None,
        reduction_factor=float(factor) if factor is not None else None,
        png=png,
    )
    if save_to_optuna and result.figures:
        save_figures_to_study(study, result.figures, result.analysis.summary_markdown)
        result.messages.append(
            f"figures and summary saved into the Optuna study {study_name!r} (optuna-dashboard)"
        )
    return result

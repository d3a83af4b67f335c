"""Learning curves (metric per epoch per trial) and early stopping at ASHA rungs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, numeric_params

__all__ = ["LearningCurves", "asha_rungs", "learning_curves", "stop_rung"]

Budget = Literal["full", "last"]


def _converged(last: pd.DataFrame, ends: pd.DataFrame | None) -> np.ndarray:
    """Per run (row of ``last``): whether the store says it converged."""
    if ends is None or ends.empty or not {"number", "seed", "ended"} <= set(ends.columns):
        return np.zeros(len(last), dtype=bool)
    done = ends[ends["ended"] == "converged"]
    keys = set(zip(done["number"].astype(int), done["seed"].astype(int), strict=True))
    return np.array(
        [
            pd.notna(seed) and (int(number), int(seed)) in keys
            for number, seed in zip(last["number"], last["seed"], strict=True)
        ],
        dtype=bool,
    )


def asha_rungs(
    max_epochs: int, grace_period: int | None, reduction_factor: float | None
) -> list[int]:
    """ASHA rung milestones ``grace * rf**k`` strictly below ``max_epochs`` (ascending).

    Mirrors Ray Tune's ``ASHAScheduler`` (``max_t=max_epochs``); the full budget itself is not a
    rung, a trial reaching it simply completes. Empty when no ASHA settings are given.
    """
    if grace_period is None or reduction_factor is None:
        return []
    if grace_period < 1 or reduction_factor <= 1:
        raise ValueError("grace_period must be >= 1 and reduction_factor > 1")
    rungs: list[int] = []
    milestone = float(grace_period)
    while milestone < max_epochs:
        rungs.append(round(milestone))
        milestone *= reduction_factor
    return rungs


def stop_rung(epochs: int, rungs: list[int]) -> int | None:
    """The rung at which a trial that reached ``epochs`` was stopped: the last rung <= epochs."""
    passed = [r for r in rungs if r <= epochs]
    return passed[-1] if passed else None


_CURVE_COLUMNS = (
    "number",
    "seed",
    "epoch",
    "valid_metric",
    "state",
    "stopped_early",
    "unfinished",
    "color",
)


@dataclass(frozen=True)
class LearningCurves:
    """Curves to draw and which trials stopped early (and where)."""

    curves: pd.DataFrame
    """Long frame: ``number``, ``seed``, ``epoch``, ``valid_metric``, ``state``,
    ``stopped_early``, ``unfinished``, ``color``; sorted by (number, seed, epoch)."""
    final: pd.DataFrame
    """One row per curve: ``number``, ``seed``, ``epoch`` (last), ``valid_metric`` there,
    ``state``, ``stopped_early``, ``unfinished``, ``rung``, ``color``."""
    color_param: str | None
    rungs: list[int]
    max_epochs: int
    budget: Budget

    @property
    def n_stopped_early(self) -> int:
        return int(self.final["stopped_early"].sum()) if len(self.final) else 0

    @property
    def n_unfinished(self) -> int:
        return int(self.final["unfinished"].sum()) if len(self.final) else 0


def learning_curves(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    max_epochs: int,
    budget: Budget = "last",
    color_param: str | None = None,
    grace_period: int | None = None,
    reduction_factor: float | None = None,
    metric_column: str = "valid_metric",
    ends: pd.DataFrame | None = None,
) -> LearningCurves:
    """Per-trial curves of ``metric_column`` with each trial's rate for colouring.

    ``budget='full'`` keeps only trials that reached ``max_epochs`` ("full-budget trials only");
    ``budget='last'`` keeps every trial, its final point at its last epoch. A trial counts as
    stopped early when its state is PRUNED, or it is COMPLETE with fewer than ``max_epochs``.
    A run short of ``max_epochs`` in any other state (FAIL: interrupted, crashed, diverged;
    RUNNING) is ``unfinished``: drawn, never counted as stopped by the scheduler. A run the
    store's ``ends`` (``number``, ``seed``, ``ended``) says converged (its ``patience`` ran out)
    is neither: it ended on its own.
    """
    if budget not in ("full", "last"):
        raise ValueError("budget must be 'full' or 'last'")
    rungs = asha_rungs(max_epochs, grace_period, reduction_factor)
    if not {"number", "epoch", metric_column} <= set(epochs.columns):
        # No per-epoch rows: nothing to draw.
        out_cols = list(_CURVE_COLUMNS)
        return LearningCurves(pd.DataFrame(columns=out_cols),
                              pd.DataFrame(columns=[*out_cols, "rung"]), color_param, rungs,
                              int(max_epochs), budget)  # fmt: skip
    if color_param is None:
        nums = numeric_params(trials)
        color_param = nums[0] if nums else None
    cols = ["number", "state"]
    if "epochs" in trials:
        cols.append("epochs")
    ccol = PARAM_PREFIX + color_param if color_param else None
    if ccol and ccol in trials:
        cols.append(ccol)
    meta = trials[cols].drop_duplicates("number")
    e = (
        epochs[["number", "seed", "epoch", metric_column]]
        if "seed" in epochs
        else epochs[["number", "epoch", metric_column]].assign(seed=np.nan)
    )
    e = e.rename(columns={metric_column: "valid_metric"})
    e = e[np.isfinite(pd.to_numeric(e["valid_metric"], errors="coerce").to_numpy(dtype=float))]
    df = e.merge(meta, on="number", how="left")
    df["state"] = df["state"].fillna("COMPLETE").astype(str)
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce")
    df["color"] = df[ccol].astype(float) if ccol and ccol in df else np.nan
    df = df.sort_values(["number", "seed", "epoch"], kind="stable").reset_index(drop=True)

    df["_cid"] = df.groupby(["number", "seed"], sort=False, dropna=False).ngroup()
    last = df.groupby("_cid", sort=False).tail(1).copy()
    reached = last["epoch"].to_numpy(dtype=int)
    if "epochs" in last:
        ep = pd.to_numeric(last["epochs"], errors="coerce").to_numpy(dtype=float)
        reached = np.where(np.isfinite(ep), np.maximum(ep, reached), reached).astype(int)
    state = last["state"].to_numpy()
    converged = _converged(last, ends)
    stopped = ((state == "PRUNED") | ((state == "COMPLETE") & (reached < max_epochs))) & ~converged
    last["reached"] = reached
    last["stopped_early"] = stopped
    last["unfinished"] = ~stopped & ~converged & (state != "COMPLETE") & (reached < max_epochs)
    last["rung"] = [
        stop_rung(int(r), rungs) if s and rungs else None
        for r, s in zip(reached, stopped, strict=True)
    ]
    if budget == "full":
        last = last[last["reached"] >= max_epochs]
    by_cid = last.set_index("_cid")
    curves = df[df["_cid"].isin(by_cid.index)].copy()
    for flag in ("stopped_early", "unfinished"):
        curves[flag] = curves["_cid"].map(by_cid[flag]).astype(bool)
    out_cols = list(_CURVE_COLUMNS)
    final = last[[*out_cols, "rung"]].reset_index(drop=True)
    curves = curves[out_cols]
    return LearningCurves(
        curves=curves.reset_index(drop=True),
        final=final,
        color_param=color_param,
        rungs=rungs,
        max_epochs=int(max_epochs),
        budget=budget,
    )

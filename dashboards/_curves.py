"""Learning curves (metric per epoch per trial) and early stopping at ASHA rungs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, numeric_params
from ._frame import Col, TrialState

__all__ = [
    "MAX_CURVES",
    "CurveLines",
    "LearningCurves",
    "asha_rungs",
    "curve_lines",
    "learning_curves",
    "stop_rung",
]

#: At most this many runs' curves are drawn (a fixed random sample of them).
MAX_CURVES = 1500
#: Line styles by how a run ended, in drawing order: full budget, stopped by the scheduler,
#: unfinished (failed, interrupted or still running).
LINE_STYLES = ("solid", "dot", "dash")

Budget = Literal["full", "last"]


def _converged(last: pd.DataFrame, ends: pd.DataFrame | None) -> np.ndarray:
    """Per run (row of ``last``): whether the store says it converged."""
    if ends is None or ends.empty or not {Col.NUMBER, Col.SEED, Col.ENDED} <= set(ends.columns):
        return np.zeros(len(last), dtype=bool)
    done = ends[ends[Col.ENDED] == "converged"]
    keys = set(zip(done[Col.NUMBER].astype(int), done[Col.SEED].astype(int), strict=True))
    return np.array(
        [
            pd.notna(seed) and (int(number), int(seed)) in keys
            for number, seed in zip(last[Col.NUMBER], last[Col.SEED], strict=True)
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
    Col.NUMBER,
    Col.SEED,
    Col.EPOCH,
    Col.VALID_METRIC,
    Col.STATE,
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
    metric_column: str = Col.VALID_METRIC,
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
    if not {Col.NUMBER, Col.EPOCH, metric_column} <= set(epochs.columns):
        # No per-epoch rows: nothing to draw.
        out_cols = list(_CURVE_COLUMNS)
        return LearningCurves(pd.DataFrame(columns=out_cols),
                              pd.DataFrame(columns=[*out_cols, "rung"]), color_param, rungs,
                              int(max_epochs), budget)  # fmt: skip
    if color_param is None:
        nums = numeric_params(trials)
        color_param = nums[0] if nums else None
    cols = [Col.NUMBER, Col.STATE]
    if Col.EPOCHS in trials:
        cols.append(Col.EPOCHS)
    ccol = PARAM_PREFIX + color_param if color_param else None
    if ccol and ccol in trials:
        cols.append(ccol)
    meta = trials[cols].drop_duplicates(Col.NUMBER)
    e = (
        epochs[[Col.NUMBER, Col.SEED, Col.EPOCH, metric_column]]
        if Col.SEED in epochs
        else epochs[[Col.NUMBER, Col.EPOCH, metric_column]].assign(seed=np.nan)
    )
    e = e.rename(columns={metric_column: Col.VALID_METRIC})
    e = e[np.isfinite(pd.to_numeric(e[Col.VALID_METRIC], errors="coerce").to_numpy(dtype=float))]
    df = e.merge(meta, on=Col.NUMBER, how="left")
    df[Col.STATE] = df[Col.STATE].fillna(TrialState.COMPLETE).astype(str)
    df[Col.SEED] = pd.to_numeric(df[Col.SEED], errors="coerce")
    df["color"] = df[ccol].astype(float) if ccol and ccol in df else np.nan
    df = df.sort_values([Col.NUMBER, Col.SEED, Col.EPOCH], kind="stable").reset_index(drop=True)

    df["_cid"] = df.groupby([Col.NUMBER, Col.SEED], sort=False, dropna=False).ngroup()
    last = df.groupby("_cid", sort=False).tail(1).copy()
    reached = last[Col.EPOCH].to_numpy(dtype=int)
    if Col.EPOCHS in last:
        ep = pd.to_numeric(last[Col.EPOCHS], errors="coerce").to_numpy(dtype=float)
        reached = np.where(np.isfinite(ep), np.maximum(ep, reached), reached).astype(int)
    state = last[Col.STATE].to_numpy()
    converged = _converged(last, ends)
    stopped = (
        (state == TrialState.PRUNED) | ((state == TrialState.COMPLETE) & (reached < max_epochs))
    ) & ~converged
    last["reached"] = reached
    last["stopped_early"] = stopped
    last["unfinished"] = (
        ~stopped & ~converged & (state != TrialState.COMPLETE) & (reached < max_epochs)
    )
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


class CurveLines(NamedTuple):
    """What the learning-curves figure draws: the curves (a sample of at most ``max_curves``
    runs) joined into one polyline per (line style, colour level)."""

    shown: int
    """Runs in the study (the figure says when it draws fewer)."""
    final: pd.DataFrame
    """The drawn runs' last points (:attr:`LearningCurves.final` rows)."""
    lines: list[tuple[str, int, np.ndarray, np.ndarray]]
    """(dash style, colour level, x, y): the curves of one style and level, NaN between them."""
    has_color: bool
    color_range: tuple[float, float]


def curve_lines(
    c: LearningCurves,
    ranges: dict[str, tuple[float, float]],
    *,
    max_curves: int = MAX_CURVES,
    n_colors: int = 24,
) -> CurveLines:
    """The curves of ``c`` to draw: a fixed random sample of ``max_curves`` runs when there are
    more, each run's colour value quantized to ``n_colors`` levels of its parameter's range
    (``ranges``; one line per level and style instead of one per run)."""
    df, final = c.curves, c.final
    shown = len(final)
    if shown > max_curves:
        keep = np.random.default_rng(0).choice(shown, size=max_curves, replace=False)
        final = final.iloc[np.sort(keep)]
        key = set(zip(final[Col.NUMBER], final[Col.SEED].fillna(-1), strict=True))
        mask = [k in key for k in zip(df[Col.NUMBER], df[Col.SEED].fillna(-1), strict=True)]
        df = df[np.asarray(mask, dtype=bool)]
    lo, hi = ranges.get(c.color_param or "", (0.0, 1.0))
    color = df["color"].to_numpy(dtype=float)
    span = hi - lo if hi > lo else 1.0
    level = np.clip(np.round((color - lo) / span * (n_colors - 1)), 0, n_colors - 1)
    level = np.where(np.isfinite(level), level, 0).astype(int)
    styles = np.where(
        df["stopped_early"].to_numpy(dtype=bool),
        "dot",
        np.where(df["unfinished"].to_numpy(dtype=bool), "dash", "solid"),
    )
    lines = []
    for style in LINE_STYLES:
        for b in np.unique(level):
            sel = (level == b) & (styles == style)
            if sel.any():
                lines.append((style, int(b), *_with_gaps(df[sel])))
    return CurveLines(shown, final, lines, bool(np.isfinite(color).any()), (lo, hi))


def _with_gaps(part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate curves into one polyline with NaN gaps between them."""
    gid = part.groupby([Col.NUMBER, Col.SEED], sort=False, dropna=False).ngroup().to_numpy()
    x = part[Col.EPOCH].to_numpy(dtype=float)
    y = part[Col.VALID_METRIC].to_numpy(dtype=float)
    breaks = np.nonzero(np.diff(gid) != 0)[0] + 1
    return np.insert(x, breaks, np.nan), np.insert(y, breaks, np.nan)

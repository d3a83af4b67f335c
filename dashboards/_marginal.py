"""The effect of one searched parameter: per-configuration means with their intervals, and a
curve only where the GP supports one (its partial dependence over the other parameters)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, Direction, is_log_param
from ._configs import ConfigTable
from ._model import ModelFit

__all__ = ["Marginal", "MarginalCurve", "dodged_x", "marginal"]

_Z = 1.959963984540054  # two-sided 95% of the normal (the GP posterior is Gaussian)


@dataclass(frozen=True)
class MarginalCurve:
    """GP partial dependence on ``grid`` (sorted, inside the observed range) with its 95%
    posterior (credible) band: uncertainty of the averaged mean, not the spread of single runs."""

    grid: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    method: str
    averaged_over: list[str]
    best_x: float
    best_mean: float
    within_se: tuple[float, float]
    """Range of the grid where the curve is within one posterior std of its best."""


@dataclass(frozen=True)
class Marginal:
    param: str
    configs: pd.DataFrame
    """Per configuration: ``x``, ``mean``, ``low``, ``high``, ``n``, ``kind``, ``values`` (the
    seeds' values), ``color`` (the colour parameter's value), ``numbers``."""
    color_param: str | None
    curve: MarginalCurve | None
    curve_reason: str
    table: ConfigTable
    log_scale: bool

    @property
    def epoch_label(self) -> str:
        return self.table.epoch.label


def marginal(
    table: ConfigTable,
    model: ModelFit | None,
    param: str,
    *,
    color_param: str | None = None,
    direction: Direction = "minimize",
    grid_size: int = 50,
) -> Marginal:
    c = table.configs
    col = PARAM_PREFIX + param
    ccol = PARAM_PREFIX + color_param if color_param else None
    values = [tuple(table.intervals[k].values) for k in c["config"]] if len(c) else []
    configs = pd.DataFrame(
        {
            "x": c[col].to_numpy(dtype=float) if len(c) else [],
            "mean": c["mean"].to_numpy(dtype=float) if len(c) else [],
            "low": c["low"].to_numpy(dtype=float) if len(c) else [],
            "high": c["high"].to_numpy(dtype=float) if len(c) else [],
            "n": c["n"].to_numpy() if len(c) else [],
            "kind": c["kind"].to_numpy() if len(c) else [],
            "values": values,
            "color": c[ccol].to_numpy(dtype=float) if ccol and len(c) else np.nan,
            "numbers": c["numbers"].to_numpy() if len(c) else [],
        }
    ).sort_values("x", kind="stable")
    log = is_log_param(param, configs["x"]) if len(configs) else False
    curve, reason = None, model.reason if model is not None else "no model"
    if model is not None and model.gp is not None and param in model.params:
        curve = _curve(model, param, direction, grid_size)
        reason = ""
    return Marginal(param, configs.reset_index(drop=True), color_param, curve, reason, table, log)


def _curve(model: ModelFit, param: str, direction: Direction, size: int) -> MarginalCurve:
    assert model.gp is not None
    grid = model.grid(param, size)
    mean, std = model.gp.partial_dependence((model.dim(param),), grid[:, None], model.others)
    sign = 1.0 if direction == "minimize" else -1.0
    i = int(np.argmin(sign * mean))
    ok = sign * mean <= sign * mean[i] + std[i]
    return MarginalCurve(
        grid=grid,
        mean=mean,
        low=mean - _Z * std,
        high=mean + _Z * std,
        method=model.method,
        averaged_over=[p for p in model.params if p != param],
        best_x=float(grid[i]),
        best_mean=float(mean[i]),
        within_se=(float(grid[ok].min()), float(grid[ok].max())),
    )


def dodged_x(configs: pd.DataFrame, log: bool) -> np.ndarray:
    """``configs``' x, configurations sharing a value dodged sideways by their colour value (at
    most 1.5% of the axis) so their intervals do not hide each other (hover shows the true x)."""
    x = configs["x"].to_numpy(dtype=float)
    if len(x) < 2:
        return x
    t = np.log10(x) if log else x
    span = float(np.ptp(t)) or 1.0
    out = t.copy()
    for value in np.unique(t):
        idx = np.nonzero(t == value)[0]
        if len(idx) > 1:
            order = np.argsort(np.argsort(configs["color"].to_numpy(float)[idx], kind="stable"))
            out[idx] = value + (order - (len(idx) - 1) / 2) * 0.015 * span / max(len(idx) - 1, 1)
    return 10**out if log else out

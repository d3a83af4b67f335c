"""2-D response surface of the metric over two parameters (by default the two zoneout rates)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, Direction, is_log_param, scored_trials
from ._gp import fit_gp

__all__ = ["SURFACE_MIN_POINTS", "ResponseSurface", "response_surface"]

#: Fewer distinct (x, y) points than this and no surface is fitted.
SURFACE_MIN_POINTS = 10


@dataclass(frozen=True)
class ResponseSurface:
    """GP mean and std on a grid restricted to the observed bounding box.

    ``mean``/``std``/``within_se`` have shape ``(len(y_grid), len(x_grid))`` (rows follow y, as
    plotly's contour expects). ``within_se`` marks where the mean is within one standard error of
    the best, the standard error being the GP posterior std of the mean at the best grid point.
    """

    x_param: str
    y_param: str
    x_grid: np.ndarray
    y_grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    within_se: np.ndarray
    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    numbers: np.ndarray
    best_x: float
    best_y: float
    best_mean: float
    best_se: float
    best_trial: int
    """Number of the best observed trial."""
    log_x: bool
    log_y: bool
    method: str
    n_fit: int
    value: str = "best_value"

    @property
    def available(self) -> bool:
        return self.mean.size > 0

    def within_se_ranges(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """Projection of the within-one-SE region on each axis: ((x_lo, x_hi), (y_lo, y_hi))."""
        if not self.available or not self.within_se.any():
            return None
        rows, cols = np.nonzero(self.within_se)
        xs, ys = self.x_grid[cols], self.y_grid[rows]
        return (float(xs.min()), float(xs.max())), (float(ys.min()), float(ys.max()))


def response_surface(
    trials: pd.DataFrame,
    x_param: str = "zoneout_cell",
    y_param: str = "zoneout_hidden",
    *,
    value: str = "best_value",
    direction: Direction = "minimize",
    grid_size: int = 50,
    log_x: bool | None = None,
    log_y: bool | None = None,
    seed: int = 0,
) -> ResponseSurface:
    """Fit a 2-D GP of ``value`` over (``x_param``, ``y_param``) of the COMPLETE trials.

    Other parameters act as noise (absorbed by the white-noise term). Above a few hundred trials
    the fit is binned (see :mod:`dashboards._gp`).
    """
    xc, yc = PARAM_PREFIX + x_param, PARAM_PREFIX + y_param
    t = scored_trials(trials, value=value)
    if xc in t and yc in t:
        t = t[pd.to_numeric(t[xc], errors="coerce").notna()]
        t = t[pd.to_numeric(t[yc], errors="coerce").notna()]
        x, y = t[xc].to_numpy(dtype=float), t[yc].to_numpy(dtype=float)
    else:
        t = t.iloc[0:0]
        x = y = np.array([], dtype=float)
    v = t[value].to_numpy(dtype=float)
    numbers = t["number"].to_numpy() if "number" in t else np.arange(len(t))
    lx = is_log_param(x_param, x) if log_x is None else bool(log_x and np.all(x > 0))
    ly = is_log_param(y_param, y) if log_y is None else bool(log_y and np.all(y > 0))
    sign = 1.0 if direction == "minimize" else -1.0
    best_trial = int(numbers[int(np.argmin(sign * v))]) if len(v) else -1

    n_distinct = len({(a, b) for a, b in zip(x, y, strict=True)})
    ok = n_distinct >= SURFACE_MIN_POINTS and len(np.unique(x)) >= 3 and len(np.unique(y)) >= 3
    if not ok:
        e = np.array([], dtype=float)
        e2 = np.zeros((0, 0))
        nan = float("nan")
        return ResponseSurface(
            x_param, y_param, e, e, e2, e2, e2.astype(bool), x, y, v, numbers,
            nan, nan, nan, nan, best_trial, lx, ly, "none", 0, value,
        )  # fmt: skip

    def axis(vals: np.ndarray, log: bool) -> np.ndarray:
        lo, hi = float(vals.min()), float(vals.max())
        return np.geomspace(lo, hi, grid_size) if log else np.linspace(lo, hi, grid_size)

    xg, yg = axis(x, lx), axis(y, ly)
    gp = fit_gp(np.column_stack([x, y]), v, log=(lx, ly), seed=seed)
    xx, yy = np.meshgrid(xg, yg)
    mu, sd = gp.predict(np.column_stack([xx.ravel(), yy.ravel()]))
    mean, std = mu.reshape(xx.shape), sd.reshape(xx.shape)
    i = int(np.argmin(sign * mean))
    r, c = np.unravel_index(i, mean.shape)
    best_mean, best_se = float(mean[r, c]), float(std[r, c])
    within = sign * mean <= sign * best_mean + best_se
    return ResponseSurface(
        x_param=x_param,
        y_param=y_param,
        x_grid=xg,
        y_grid=yg,
        mean=mean,
        std=std,
        within_se=within,
        x=x,
        y=y,
        values=v,
        numbers=numbers,
        best_x=float(xg[c]),
        best_y=float(yg[r]),
        best_mean=best_mean,
        best_se=best_se,
        best_trial=best_trial,
        log_x=lx,
        log_y=ly,
        method="binned-gp" if gp.binned else "gp",
        n_fit=gp.n_fit,
        value=value,
    )

"""The response over two parameters (by default the two zoneout rates).

Always: the observed configurations' means, to be drawn as points coloured by value on a colour
bar. On a lattice (a grid study, or any study whose rates repeat): per-cell means with their n, the
paper's Figure 3. With enough distinct configurations: the GP's partial dependence on the two
parameters, inside the observed box only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, Direction
from ._configs import ConfigTable
from ._model import ModelFit

__all__ = ["MAX_LATTICE_VALUES", "GPSurface", "Lattice", "Surface", "response_surface"]

#: A parameter with more distinct values than this is not on a lattice.
MAX_LATTICE_VALUES = 12
_SURFACE_OTHERS = 12


@dataclass(frozen=True)
class Lattice:
    """Per-cell means: ``mean[i, j]`` / ``n[i, j]`` at ``y_values[i]``, ``x_values[j]``."""

    x_values: np.ndarray
    y_values: np.ndarray
    mean: np.ndarray
    n: np.ndarray
    """Seeds behind each cell mean (0 where the cell was not run)."""

    @property
    def n_cells(self) -> int:
        return int((self.n > 0).sum())


@dataclass(frozen=True)
class GPSurface:
    """GP partial dependence on a grid inside the observed box (rows follow y)."""

    x_grid: np.ndarray
    y_grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    within_se: np.ndarray
    best_x: float
    best_y: float
    best_mean: float
    best_se: float
    method: str
    averaged_over: list[str]


@dataclass(frozen=True)
class Surface:
    x_param: str
    y_param: str
    points: pd.DataFrame
    """Per configuration: ``x``, ``y``, ``mean``, ``n``, ``kind``, ``numbers``."""
    lattice: Lattice | None
    gp: GPSurface | None
    gp_reason: str
    table: ConfigTable
    log_x: bool
    log_y: bool

    @property
    def epoch_label(self) -> str:
        return self.table.epoch.label


def lattice_of(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Sorted distinct values of x and y when the points lie on a lattice: few values per axis
    and each value shared by several configurations on both axes (a random search has as many
    distinct values as points)."""
    cells = {(a, b) for a, b in zip(x, y, strict=True)}
    xs, ys = np.unique(x), np.unique(y)
    if len(xs) < 2 or len(ys) < 2 or max(len(xs), len(ys)) > MAX_LATTICE_VALUES:
        return None
    if len(xs) >= len(cells) or len(ys) >= len(cells):
        return None
    return xs, ys


def response_surface(
    table: ConfigTable,
    model: ModelFit | None,
    x_param: str,
    y_param: str,
    *,
    direction: Direction = "minimize",
    grid_size: int = 28,
) -> Surface:
    """The surface data of ``x_param`` x ``y_param`` from per-configuration means and the GP."""
    c = table.configs
    xc, yc = PARAM_PREFIX + x_param, PARAM_PREFIX + y_param
    x = c[xc].to_numpy(dtype=float) if len(c) else np.array([])
    y = c[yc].to_numpy(dtype=float) if len(c) else np.array([])
    points = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "mean": c["mean"].to_numpy(float) if len(c) else [],
            "n": c["n"].to_numpy() if len(c) else [],
            "kind": c["kind"] if len(c) else [],
            "numbers": c["numbers"] if len(c) else [],
        }
    )
    lattice = None
    axes = lattice_of(x, y) if len(c) else None
    if axes is not None:
        xs, ys = axes
        mean = np.full((len(ys), len(xs)), np.nan)
        n = np.zeros((len(ys), len(xs)), dtype=int)
        # Several trials may share a cell (a grid point rerun): pool their seeds' values.
        for (i, j), grp in pd.DataFrame(
            {
                "i": np.searchsorted(ys, y),
                "j": np.searchsorted(xs, x),
                "m": points["mean"],
                "n": points["n"],
            }
        ).groupby(["i", "j"]):
            w = grp["n"].to_numpy(float)
            mean[i, j] = float(np.sum(grp["m"] * w) / w.sum())
            n[i, j] = int(w.sum())
        lattice = Lattice(xs, ys, mean, n)
    lx = bool(model.log[model.dim(x_param)]) if model and x_param in model.params else False
    ly = bool(model.log[model.dim(y_param)]) if model and y_param in model.params else False
    gp, reason = None, model.reason if model is not None else "no model"
    if model is not None and model.gp is not None:
        dist = len({(a, b) for a, b in zip(x, y, strict=True)})
        if len(np.unique(x)) < 3 or len(np.unique(y)) < 3:
            reason = "a surface needs at least 3 distinct values of each rate"
        else:
            gp = _gp_surface(model, x_param, y_param, direction, grid_size)
            reason = f"{dist} distinct points"
    return Surface(x_param, y_param, points, lattice, gp, reason, table, lx, ly)


def _gp_surface(
    model: ModelFit, x_param: str, y_param: str, direction: Direction, size: int
) -> GPSurface:
    xg, yg = model.grid(x_param, size), model.grid(y_param, size)
    xx, yy = np.meshgrid(xg, yg)
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    assert model.gp is not None
    dims = (model.dim(x_param), model.dim(y_param))
    # A 2-D grid costs len(grid) x len(others) predictions: average over fewer of the others.
    others = model.others[:: max(1, len(model.others) // _SURFACE_OTHERS)]
    mu, sd = model.gp.partial_dependence(dims, grid, others)
    mean, std = mu.reshape(xx.shape), sd.reshape(xx.shape)
    sign = 1.0 if direction == "minimize" else -1.0
    r, col = np.unravel_index(int(np.argmin(sign * mean)), mean.shape)
    best_mean, best_se = float(mean[r, col]), float(std[r, col])
    within = sign * mean <= sign * best_mean + best_se
    others = [p for p in model.params if p not in (x_param, y_param)]
    return GPSurface(
        xg,
        yg,
        mean,
        std,
        within,
        float(xg[col]),
        float(yg[r]),
        best_mean,
        best_se,
        model.method,
        others,
    )

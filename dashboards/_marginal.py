"""Marginal effect of one searched parameter on the validation metric, and seed spread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ._common import (
    PARAM_PREFIX,
    Direction,
    config_key,
    is_log_param,
    numeric_params,
    param_columns,
    scored_trials,
)
from ._gp import fit_gp, local_linear

__all__ = [
    "GP_MIN_POINTS",
    "SMOOTH_MIN_POINTS",
    "MarginalEffect",
    "SeedSpread",
    "bootstrap_ci",
    "marginal_effect",
    "marginal_effects",
    "seed_spread",
]

#: At least this many distinct parameter values: Gaussian-process fit.
GP_MIN_POINTS = 8
#: From this many up to GP_MIN_POINTS - 1: LOWESS (local-linear) smoother; below: points only.
SMOOTH_MIN_POINTS = 4
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class SeedSpread:
    """Per configuration (params equal, seeds differ): mean and bootstrap 95% interval."""

    configs: pd.DataFrame
    """Columns: ``config`` (key), ``param_*``, ``n_seeds``, ``mean``, ``ci_low``, ``ci_high``,
    ``std``; sorted best first."""
    value: str
    has_repeats: bool


@dataclass(frozen=True)
class MarginalEffect:
    """Raw points and a smoothed marginal (with 95% band) of ``param`` versus the metric.

    The smoothed curve is a 1-D fit of the metric on this parameter alone, so the other
    parameters act as noise: it shows the average effect of the parameter as it was sampled.
    """

    param: str
    x: np.ndarray
    """Parameter value of every scored trial (COMPLETE and PRUNED)."""
    y: np.ndarray
    numbers: np.ndarray
    states: np.ndarray
    grid: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    std: np.ndarray
    method: Literal["gp", "binned-gp", "lowess", "none"]
    log_scale: bool
    n_fit: int
    best_x: float
    """Grid location of the best smoothed mean (NaN when there is no smooth)."""
    best_mean: float
    within_se: tuple[float, float] | None
    """Range of the grid where the mean is within one posterior std of the best mean."""
    value: str = "best_value"
    spread: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Seed spread of configurations with repeats: ``x``, ``n_seeds``, ``mean``, ``ci_low``,
    ``ci_high`` (empty when no configuration was repeated)."""


def bootstrap_ci(
    values: np.ndarray | list[float],
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval of the mean of ``values`` (seeded).

    With a single value the interval collapses onto it.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    mean = float(v.mean())
    if v.size == 1:
        return mean, mean, mean
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    idx = gen.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return mean, float(min(lo, mean)), float(max(hi, mean))


def seed_spread(
    trials: pd.DataFrame,
    *,
    value: str = "best_value",
    direction: Direction = "minimize",
    n_boot: int = 2000,
    seed: int = 0,
) -> SeedSpread:
    """Group COMPLETE trials by configuration (all ``param_*`` equal) and bootstrap each mean."""
    t = scored_trials(trials, value=value)
    pcols = [PARAM_PREFIX + n for n in param_columns(t)]
    if t.empty:
        cols = ["config", *pcols, "n_seeds", "mean", "ci_low", "ci_high", "std"]
        return SeedSpread(pd.DataFrame(columns=cols), value, False)
    keys = config_key(t)
    rng = np.random.default_rng(seed)
    vals = t[value].astype(float)
    grouped = vals.groupby(keys, sort=False)
    df = pd.DataFrame({"mean": grouped.mean(), "n_seeds": grouped.size(), "std": grouped.std()})
    first = t.groupby(keys, sort=False)[pcols].first()
    df = pd.concat([first, df], axis=1)
    df["ci_low"] = df["mean"]
    df["ci_high"] = df["mean"]
    # Bootstrap only configurations that were repeated (a single seed has no spread).
    for key, grp in vals[keys.map(df["n_seeds"]).to_numpy() > 1].groupby(keys, sort=True):
        _, lo, hi = bootstrap_ci(grp.to_numpy(), n_boot=n_boot, rng=rng)
        df.loc[key, ["ci_low", "ci_high"]] = (lo, hi)
    df = df.rename_axis("config").reset_index()
    df = df[["config", *pcols, "n_seeds", "mean", "ci_low", "ci_high", "std"]]
    df = df.sort_values("mean", ascending=direction == "minimize", kind="stable")
    return SeedSpread(df.reset_index(drop=True), value, bool((df["n_seeds"] > 1).any()))


def marginal_effect(
    trials: pd.DataFrame,
    param: str,
    *,
    value: str = "best_value",
    direction: Direction = "minimize",
    log_scale: bool | None = None,
    grid_size: int = 100,
    include_pruned: bool = False,
    spread: SeedSpread | None = None,
    seed: int = 0,
) -> MarginalEffect:
    """Smoothed marginal of ``value`` against ``param`` over the observed range.

    Raw points: COMPLETE and PRUNED trials (``states`` tells them apart); the smooth is fitted to
    COMPLETE trials only unless ``include_pruned`` (a pruned trial's value is from a smaller
    budget).

    Method by the number of distinct parameter values among the scored trials: at least
    :data:`GP_MIN_POINTS` -> GP (``Matern(2.5) + WhiteKernel`` on normalized inputs; binned above
    a few hundred trials, see :mod:`dashboards._gp`); :data:`SMOOTH_MIN_POINTS` or more -> LOWESS;
    fewer -> raw points only. The band is the 95% band of the mean function, not of single
    trials. The grid never leaves the observed range.
    """
    col = PARAM_PREFIX + param
    t = scored_trials(trials, value=value, include_pruned=True)
    t = t[pd.to_numeric(t[col], errors="coerce").notna()]
    x_all = t[col].to_numpy(dtype=float)
    y_all = t[value].to_numpy(dtype=float)
    numbers = t["number"].to_numpy() if "number" in t else np.arange(len(t))
    states = t["state"].astype(str).to_numpy() if "state" in t else np.full(len(t), "COMPLETE")
    # PRUNED trials are shown but, being scored at a smaller budget, not fitted (by default).
    fit = np.ones(len(t), dtype=bool) if include_pruned else states == "COMPLETE"
    x, y = x_all[fit], y_all[fit]
    log = is_log_param(param, x_all) if log_scale is None else bool(log_scale and np.all(x > 0))
    n_distinct = len(np.unique(x))
    sign = 1.0 if direction == "minimize" else -1.0

    empty = np.array([], dtype=float)
    grid, mean, std = empty, empty, empty
    method: Literal["gp", "binned-gp", "lowess", "none"] = "none"
    n_fit = 0
    if n_distinct >= SMOOTH_MIN_POINTS:
        lo, hi = x.min(), x.max()
        grid = (np.geomspace(lo, hi, grid_size) if log else np.linspace(lo, hi, grid_size)).astype(
            float
        )
        if n_distinct >= GP_MIN_POINTS:
            gp = fit_gp(x[:, None], y, log=(log,), seed=seed)
            mean, std = gp.predict(grid[:, None])
            method = "binned-gp" if gp.binned else "gp"
            n_fit = gp.n_fit
        else:
            xs = np.log10(x) if log else x
            gs = np.log10(grid) if log else grid
            mean, std = local_linear(xs, y, gs)
            method = "lowess"
            n_fit = len(x)

    if mean.size:
        i = int(np.argmin(sign * mean))
        best_x, best_mean = float(grid[i]), float(mean[i])
        ok = sign * mean <= sign * best_mean + std[i]
        within: tuple[float, float] | None = (float(grid[ok].min()), float(grid[ok].max()))
    else:
        best_x = best_mean = float("nan")
        within = None

    sp = spread if spread is not None else seed_spread(trials, value=value, direction=direction)
    rep = sp.configs[sp.configs["n_seeds"] > 1] if sp.has_repeats else sp.configs.iloc[0:0]
    spread_df = pd.DataFrame(
        {
            "x": rep[col].to_numpy(dtype=float) if col in rep else empty,
            "n_seeds": rep["n_seeds"].to_numpy() if len(rep) else empty,
            "mean": rep["mean"].to_numpy(dtype=float) if len(rep) else empty,
            "ci_low": rep["ci_low"].to_numpy(dtype=float) if len(rep) else empty,
            "ci_high": rep["ci_high"].to_numpy(dtype=float) if len(rep) else empty,
        }
    )
    return MarginalEffect(
        param=param,
        x=x_all,
        y=y_all,
        numbers=numbers,
        states=states,
        grid=grid,
        mean=mean,
        lower=mean - _Z95 * std,
        upper=mean + _Z95 * std,
        std=std,
        method=method,
        log_scale=log,
        n_fit=n_fit,
        best_x=best_x,
        best_mean=best_mean,
        within_se=within,
        value=value,
        spread=spread_df,
    )


def marginal_effects(
    trials: pd.DataFrame,
    *,
    params: list[str] | None = None,
    value: str = "best_value",
    direction: Direction = "minimize",
    seed: int = 0,
) -> dict[str, MarginalEffect]:
    """:func:`marginal_effect` for every numeric searched parameter (zoneout rates first)."""
    names = params if params is not None else numeric_params(trials)
    spread = seed_spread(trials, value=value, direction=direction, seed=seed)
    return {
        n: marginal_effect(trials, n, value=value, direction=direction, spread=spread, seed=seed)
        for n in names
    }

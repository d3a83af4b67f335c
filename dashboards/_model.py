"""One Gaussian process over every numeric searched parameter, read as partial dependence.

The surface over two rates and each rate's marginal curve come from the same fit, so the other
searched parameters (a learning rate, say) are averaged over rather than ignored: the curve of a
rate is the GP mean averaged over the configurations' observed values of the others (partial
dependence), not a 1-D smoother through a confounded scatter. The fit is made only with enough
distinct configurations, and every grid stays inside the observed range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, is_log_param
from ._gp import FittedGP, fit_gp
from ._runs import EpochChoice

__all__ = ["GP_MIN_CONFIGS", "ModelFit", "fit_model", "gp_min_configs"]

#: A GP needs at least this many distinct configurations, and 4 per searched dimension.
GP_MIN_CONFIGS = 8
_MAX_OTHERS = 48
_MAX_SUBSAMPLE = 400


def gp_min_configs(n_params: int) -> int:
    """Distinct configurations a GP over ``n_params`` parameters needs."""
    return max(GP_MIN_CONFIGS, 4 * n_params)


@dataclass(frozen=True)
class ModelFit:
    """The fitted GP (or why there is none) at one epoch."""

    params: list[str]
    log: tuple[bool, ...]
    epoch: EpochChoice
    gp: FittedGP | None
    others: np.ndarray
    """Distinct observed configurations (rows of raw inputs) averaged over in partial dependence."""
    lo: np.ndarray
    hi: np.ndarray
    n_configs: int
    reason: str

    @property
    def method(self) -> str:
        if self.gp is None:
            return "none"
        return "binned GP" if self.gp.binned else "GP"

    def dim(self, param: str) -> int:
        return self.params.index(param)

    def grid(self, param: str, size: int) -> np.ndarray:
        """A sorted grid inside the observed range of ``param`` (log-spaced for log params)."""
        j = self.dim(param)
        lo, hi = float(self.lo[j]), float(self.hi[j])
        return np.geomspace(lo, hi, size) if self.log[j] else np.linspace(lo, hi, size)


def fit_model(
    runs_at: pd.DataFrame, params: list[str], epoch: EpochChoice, *, seed: int = 0
) -> ModelFit:
    """Fit ``value`` of the runs over the numeric ``params`` (each with >= 2 values)."""
    log = tuple(
        is_log_param(p, runs_at[PARAM_PREFIX + p]) if PARAM_PREFIX + p in runs_at else False
        for p in params
    )
    if not params or len(runs_at) == 0:
        # Nothing to fit (an all-failed study, or none read at this epoch): no range either.
        empty = np.zeros((0, len(params)))
        nan = np.full(len(params), np.nan)
        reason = "no numeric parameter is searched" if not params else "no run has a value to fit"
        return ModelFit(params, log, epoch, None, empty, nan, nan, 0, reason)
    x = runs_at[[PARAM_PREFIX + p for p in params]].to_numpy(dtype=float)
    y = runs_at["value"].to_numpy(dtype=float)
    configs = np.unique(x, axis=0)
    lo, hi = x.min(axis=0), x.max(axis=0)
    need = gp_min_configs(len(params))
    if len(configs) < need:
        reason = (
            f"a GP fit needs {need} distinct configurations ({len(params)} searched "
            f"parameter{'s' if len(params) > 1 else ''}), {epoch.label} has {len(configs)}"
        )
        return ModelFit(params, log, epoch, None, configs, lo, hi, len(configs), reason)
    if len(params) > 2 and len(y) > _MAX_SUBSAMPLE:
        # Binning needs few dimensions; above two, a seeded subsample keeps the fit exact (and
        # its O(n^3) cost bounded: 400 points pin a smooth 3-4-D response well).
        keep = np.random.default_rng(seed).choice(len(y), _MAX_SUBSAMPLE, replace=False)
        x, y = x[keep], y[keep]
    gp = fit_gp(x, y, log=log, seed=seed)
    others = configs
    if len(others) > _MAX_OTHERS:
        pick = np.random.default_rng(seed).choice(len(others), _MAX_OTHERS, replace=False)
        others = others[np.sort(pick)]
    return ModelFit(params, log, epoch, gp, others, lo, hi, len(configs), "")

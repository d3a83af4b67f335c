"""Gaussian-process and kernel smoothers shared by the marginal and surface analyses.

Inputs are normalized to [0, 1] per dimension (after a log10 transform for log-scale
parameters) and the targets standardized, so one kernel prior fits every parameter.

Scaling: an exact GP costs O(n^3). Up to ``MAX_EXACT_POINTS`` observations are fitted exactly
with ``Matern(nu=2.5) + WhiteKernel``. Above that the observations are *binned* on a regular
grid (``BINS_1D`` bins in 1-D, ``BINS_2D`` x ``BINS_2D`` in 2-D); the GP is fitted to the bin
means with a per-bin noise variance ``s^2 / count`` where ``s^2`` is the pooled within-bin
variance. This is the exact posterior for a function that is constant inside each bin and a
close approximation for smooth ones, and it keeps the fit at a few hundred points whatever the
number of trials.

Fits run with BLAS limited to one thread: the matrices are small, and multi-threaded OpenBLAS on a
busy machine is many times slower than one thread.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from threadpoolctl import threadpool_limits

__all__ = [
    "BINS_1D",
    "BINS_2D",
    "MAX_EXACT_POINTS",
    "FittedGP",
    "fit_gp",
    "local_linear",
    "transform",
]

MAX_EXACT_POINTS = 600
BINS_1D = 64
BINS_2D = 16


@dataclass
class FittedGP:
    """A fitted GP in normalized coordinates plus what is needed to map back."""

    model: GaussianProcessRegressor
    lo: np.ndarray
    hi: np.ndarray
    y_mean: float
    y_std: float
    n_fit: int
    binned: bool
    log: tuple[bool, ...]

    def normalize(self, x: np.ndarray) -> np.ndarray:
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return (np.atleast_2d(x) - self.lo) / span

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std of the latent function (noise excluded) at raw inputs ``x``."""
        with threadpool_limits(limits=1, user_api="blas"):
            return self._predict(x)

    def predict_cov(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and covariance of the latent function at raw inputs ``x``."""
        with threadpool_limits(limits=1, user_api="blas"):
            return self._predict_cov(x)

    # Unlimited versions: entering threadpool_limits costs milliseconds, so loops enter it once.
    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xt = transform(np.asarray(x, dtype=float).reshape(len(x), -1), self.log)
        mu, sd = self.model.predict(self.normalize(xt), return_std=True)
        return mu * self.y_std + self.y_mean, sd * self.y_std

    def _predict_cov(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xt = transform(np.asarray(x, dtype=float).reshape(len(x), -1), self.log)
        mu, cov = self.model.predict(self.normalize(xt), return_cov=True)
        return mu * self.y_std + self.y_mean, cov * self.y_std**2

    def partial_dependence(
        self, dims: tuple[int, ...], grid: np.ndarray, others: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Partial dependence on the dimensions ``dims``: at each row of ``grid`` (values of
        ``dims``), the GP mean averaged over the observed values of the other dimensions
        (``others``: rows of full inputs). Returns the mean and its posterior std.

        One searched dimension left over or none: the average is over ``others``' rows; its
        variance is the average of the posterior covariance over those rows (exact for 1-D grids;
        for 2-D grids with other dimensions, the mean of pointwise variances, an upper bound).
        """
        with threadpool_limits(limits=1, user_api="blas"):
            return self._partial_dependence(dims, grid, others)

    def _partial_dependence(
        self, dims: tuple[int, ...], grid: np.ndarray, others: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        grid = np.asarray(grid, dtype=float).reshape(len(grid), -1)
        others = np.asarray(others, dtype=float).reshape(len(others), -1)
        m = len(others)
        if m == 1 or others.shape[1] == len(dims):
            x = np.repeat(others[:1], len(grid), axis=0)
            x[:, list(dims)] = grid
            return self._predict(x)
        if len(grid) <= 200:
            mean = np.empty(len(grid))
            std = np.empty(len(grid))
            for i, g in enumerate(grid):
                x = others.copy()
                x[:, list(dims)] = g
                mu, cov = self._predict_cov(x)
                mean[i] = mu.mean()
                std[i] = np.sqrt(max(float(cov.sum()) / m**2, 0.0))
            return mean, std
        x = np.repeat(others, len(grid), axis=0)
        x[:, list(dims)] = np.tile(grid, (m, 1))
        mu, sd = self._predict(x)
        mu, sd = mu.reshape(m, len(grid)), sd.reshape(m, len(grid))
        return mu.mean(axis=0), np.sqrt((sd**2).mean(axis=0))


def _bin(
    xn: np.ndarray, y: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Bin normalized inputs on a regular grid: centres, means, counts, pooled variance."""
    d = xn.shape[1]
    idx = np.clip((xn * bins).astype(int), 0, bins - 1)
    flat = np.ravel_multi_index(tuple(idx.T), (bins,) * d)
    uniq, inv, counts = np.unique(flat, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=y)
    means = sums / counts
    resid = y - means[inv]
    dof = max(len(y) - len(uniq), 1)
    pooled = float(np.sum(resid**2) / dof)
    # Use the mean input of each bin (not the bin centre): less bias at the edges.
    centres = np.stack([np.bincount(inv, weights=xn[:, j]) / counts for j in range(d)], axis=1)
    return centres, means, counts.astype(float), pooled


def fit_gp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    log: tuple[bool, ...] | None = None,
    seed: int = 0,
    max_exact: int = MAX_EXACT_POINTS,
) -> FittedGP:
    """Fit a GP to ``x`` (n, d) -> ``y`` (n,). ``log[j]``: dimension j is fitted on log10 x.

    Returns a :class:`FittedGP`; :meth:`FittedGP.predict` takes raw (untransformed) inputs.
    One point is fitted (a flat posterior around it); none raises ``ValueError`` saying so.
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    if len(y) == 0:
        raise ValueError("a GP fit needs at least one point, got none")
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    log = tuple(log) if log is not None else (False,) * x.shape[1]
    x = transform(x, log)
    lo, hi = x.min(axis=0), x.max(axis=0)
    y_mean = float(np.mean(y))
    y_std = float(np.std(y)) or 1.0
    ys = (y - y_mean) / y_std
    span = np.where(hi > lo, hi - lo, 1.0)
    xn = (x - lo) / span
    d = x.shape[1]
    matern = Matern(length_scale=np.full(d, 0.3), length_scale_bounds=(0.08, 20.0), nu=2.5)
    signal = ConstantKernel(1.0, (1e-3, 1e2)) * matern
    binned = len(ys) > max_exact
    if binned:
        centres, means, counts, pooled = _bin(xn, ys, BINS_1D if d == 1 else BINS_2D)
        alpha = pooled / counts + 1e-8
        gp = GaussianProcessRegressor(
            kernel=signal, alpha=alpha, normalize_y=False, n_restarts_optimizer=0, random_state=seed
        )
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(centres, means)
        n_fit = len(means)
    else:
        kernel = signal + WhiteKernel(0.1, (1e-6, 1e1))
        gp = GaussianProcessRegressor(
            kernel=kernel,
            alpha=1e-8,
            normalize_y=False,
            # A restart doubles the O(n^3) fit; from a few hundred points the likelihood is
            # well determined and one start suffices.
            n_restarts_optimizer=1 if len(ys) <= 200 else 0,
            random_state=seed,
        )
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(xn, ys)
        # Drop the white-noise term after fitting: predictions then give the posterior of the
        # latent mean function. The cached Cholesky factor still includes the noise, as it must.
        gp.kernel_ = gp.kernel_.k1
        n_fit = len(ys)
    return FittedGP(gp, lo, hi, y_mean, y_std, n_fit, binned, log)


def transform(x: np.ndarray, log: tuple[bool, ...]) -> np.ndarray:
    """Apply log10 to the dimensions flagged in ``log``."""
    x = np.array(x, dtype=float, copy=True).reshape(len(x), -1)
    for j, flag in enumerate(log):
        if flag:
            x[:, j] = np.log10(x[:, j])
    return x


def local_linear(
    x: np.ndarray, y: np.ndarray, grid: np.ndarray, *, frac: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """LOWESS-style local-linear smoother for few points: mean and pointwise std on ``grid``.

    Tricube weights over the nearest ``frac`` of the points (at least 3). The std is that of a
    linear smoother, ``sigma * ||l(x)||``, with ``sigma^2 = RSS / (n - tr(L))``. One or two
    points give a local constant; none raises ``ValueError`` saying so.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("a local-linear smoother needs at least one point, got none")
    k = max(3, int(np.ceil(frac * n)))

    def weights_at(x0: np.ndarray) -> np.ndarray:
        """Rows: the smoother's linear weights l(x0) over the n observations."""
        d = np.abs(x[None, :] - x0[:, None])
        h = np.sort(d, axis=1)[:, min(k, n) - 1] * 1.0001 + 1e-12
        w = np.clip(1 - (d / h[:, None]) ** 3, 0, None) ** 3
        s0 = w.sum(1, keepdims=True)
        s1 = (w * (x[None, :] - x0[:, None])).sum(1, keepdims=True)
        s2 = (w * (x[None, :] - x0[:, None]) ** 2).sum(1, keepdims=True)
        denom = s0 * s2 - s1**2
        ok = np.abs(denom) > 1e-12 * np.maximum(s0 * s2, 1e-300)
        lw = np.where(ok, w * (s2 - s1 * (x[None, :] - x0[:, None])) / np.where(ok, denom, 1), 0)
        # Fall back to a local constant where the local design is degenerate.
        lw = np.where(ok, lw, w / np.maximum(s0, 1e-300))
        return lw

    lx = weights_at(x)
    fitted = lx @ y
    dof = max(n - float(np.trace(lx)), 1.0)
    sigma2 = float(np.sum((y - fitted) ** 2) / dof)
    lg = weights_at(np.asarray(grid, dtype=float))
    return lg @ y, np.sqrt(sigma2 * np.sum(lg**2, axis=1))

"""Intervals over seeds that mean what they say.

Per configuration: the mean over seeds with a Student-t 95% interval when there are at least 3
seeds; with 2 seeds both values are kept and no interval is claimed (a percentile bootstrap of two
values is just their min and max, not a 95% interval); with 1 seed the value alone.

Seed-paired differences: configurations run with the same seeds share the seed's data order and
initialisation, so ``value(config, seed) - value(baseline, seed)`` removes the seed's own effect;
the interval is the Student-t interval of those differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["LEVEL", "Interval", "IntervalKind", "paired_difference", "seed_interval"]

#: Confidence level of every Student-t interval in the report.
LEVEL = 0.95


class IntervalKind(str, Enum):
    """What the interval of a mean over seeds is."""

    STUDENT_T = "student-t"
    """n >= 3: mean +/- t(0.975, n-1) * sd / sqrt(n)."""
    TWO_VALUES = "two-values"
    """n = 2: ``low``/``high`` are the two values themselves; no confidence is claimed."""
    SINGLE = "single"
    """n = 1: the value alone."""
    EMPTY = "empty"


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` seeds and what its ``low``/``high`` are (see :class:`IntervalKind`)."""

    mean: float
    low: float
    high: float
    n: int
    kind: IntervalKind
    values: tuple[float, ...] = ()

    @property
    def label(self) -> str:
        """How a figure or table names it: '95% Student-t over 5 seeds', 'n = 2', 'n = 1'."""
        if self.kind is IntervalKind.STUDENT_T:
            return f"{LEVEL:.0%} Student-t over {self.n} seeds"
        return f"n = {self.n}"

    def text(self, fmt: str = ".4f") -> str:
        """'3.412 [3.401, 3.423] (95% Student-t, n = 5)', '3.412 (n = 2: 3.401, 3.423)', ..."""
        if self.kind is IntervalKind.EMPTY:
            return "n/a"
        m = format(self.mean, fmt)
        if self.kind is IntervalKind.STUDENT_T:
            lo, hi = format(self.low, fmt), format(self.high, fmt)
            return f"{m} [{lo}, {hi}] ({LEVEL:.0%} Student-t, n = {self.n})"
        if self.kind is IntervalKind.TWO_VALUES:
            a, b = (format(v, fmt) for v in self.values)
            return f"{m} (n = 2: {a}, {b})"
        return f"{m} (n = 1)"


def seed_interval(values: np.ndarray | list[float] | pd.Series, level: float = LEVEL) -> Interval:
    """Mean of ``values`` (one per seed) with the interval its sample size supports."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        nan = math.nan
        return Interval(nan, nan, nan, 0, IntervalKind.EMPTY)
    mean = float(v.mean())
    kept = tuple(float(x) for x in v)
    if n == 1:
        return Interval(mean, mean, mean, 1, IntervalKind.SINGLE, kept)
    if n == 2:
        return Interval(mean, float(v.min()), float(v.max()), 2, IntervalKind.TWO_VALUES, kept)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, IntervalKind.STUDENT_T, kept)


def paired_difference(values: pd.Series, baseline: pd.Series, level: float = LEVEL) -> Interval:
    """``values - baseline`` paired on the index (the seed); seeds present in both only."""
    a = pd.Series(values, dtype=float).groupby(level=0).mean()
    b = pd.Series(baseline, dtype=float).groupby(level=0).mean()
    common = a.index.intersection(b.index)
    return seed_interval((a[common] - b[common]).to_numpy(), level)

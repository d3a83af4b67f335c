"""Shared helpers: metric metadata, parameter columns, scales and filtering of the frames."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ._frame import PARAM_PREFIX, Col, TrialState

__all__ = [
    "PARAM_PREFIX",
    "UNNAMED_STUDY",
    "Direction",
    "MetricInfo",
    "categorical_params",
    "config_key",
    "is_log_param",
    "metric_info",
    "numeric_params",
    "param_columns",
    "sanitize_name",
    "scored_trials",
]

Direction = Literal["minimize", "maximize"]
#: The name of a study that was given none.
UNNAMED_STUDY = "study"  # frame-contract: not a column

# Parameter names that are searched on a log scale whatever their observed range.
_LOG_NAME_HINTS = ("learning_rate", "lr", "weight_decay", "eps")


@dataclass(frozen=True)
class MetricInfo:
    """What the plotted metric is called, its unit and how to draw its axis."""

    name: str
    unit: str
    title: str
    direction: Direction = "minimize"
    log_axis: bool = False

    @property
    def axis_title(self) -> str:
        """Axis title naming the metric and its unit, e.g. 'validation BPC (bits per character)'."""
        if self.unit == self.title.removeprefix("validation "):
            return self.title
        return f"{self.title} ({self.unit})"

    @classmethod
    def of(cls, metric: str, direction: Direction = "minimize") -> MetricInfo:
        """Metadata for ``metric`` (see :func:`metric_info`)."""
        return metric_info(metric, direction)

    @property
    def sign(self) -> float:
        """+1 when lower is better, -1 when higher is better."""
        return 1.0 if self.direction == "minimize" else -1.0


def metric_info(metric: str, direction: Direction = "minimize") -> MetricInfo:
    """Metadata for ``metric``, a metric of ``trials.tasks`` (bpc, perplexity, error: their
    labels and units are defined there); other names are passed through."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}")
    # trials.tasks owns the metrics' names and units (imported here, when a report needs them:
    # it brings torch along).
    from trials.tasks import METRIC_LABELS, METRIC_UNITS

    key = metric.lower()
    return MetricInfo(
        name=key,
        unit=METRIC_UNITS.get(key, key),
        title=f"validation {METRIC_LABELS.get(key, key)}",
        direction=direction,
        # Perplexity is exp(loss): it spans orders of magnitude early in training.
        log_axis=key == "perplexity",
    )


def param_columns(trials: pd.DataFrame) -> list[str]:
    """Names (without the ``param_`` prefix) of the searched parameters present in ``trials``."""
    return [c[len(PARAM_PREFIX) :] for c in trials.columns if c.startswith(PARAM_PREFIX)]


def numeric_params(trials: pd.DataFrame) -> list[str]:
    """Numeric searched parameters that take at least two distinct values."""
    out = []
    for name in param_columns(trials):
        col = trials[PARAM_PREFIX + name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            continue
        if col.dropna().nunique() >= 2:
            out.append(name)
    # zoneout rates first: they are what the study is about.
    order = {"zoneout_cell": 0, "zoneout_hidden": 1}
    return sorted(out, key=lambda n: (order.get(n, 2), out.index(n)))


def categorical_params(trials: pd.DataFrame) -> list[str]:
    """Non-numeric (string or boolean) searched parameters."""
    out = []
    for name in param_columns(trials):
        col = trials[PARAM_PREFIX + name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            out.append(name)
    return out


def is_log_param(name: str, values: np.ndarray | pd.Series) -> bool:
    """Whether a numeric parameter is better viewed (and fitted) on a log scale.

    Rates (names containing ``zoneout``, ``dropout`` or ``rate`` other than ``learning_rate``)
    never are. Otherwise true when every value is positive and either the name looks like a
    learning rate / weight decay / epsilon or the values span at least three decades.
    """
    v = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").dropna(), dtype=float)
    if v.size == 0 or np.any(v <= 0):
        return False
    low = name.lower()
    tokens = set(re.split(r"[^a-z0-9]+", low))
    if any(h in tokens or low.endswith(h) for h in _LOG_NAME_HINTS):
        return True
    if "zoneout" in low or "dropout" in low or "rate" in tokens:
        return False
    return bool(v.max() / v.min() >= 1000.0)


def scored_trials(
    trials: pd.DataFrame,
    *,
    value: str = Col.BEST_VALUE,
    include_pruned: bool = False,
) -> pd.DataFrame:
    """Trials that carry a finite ``value``: COMPLETE ones (and PRUNED ones when asked)."""
    states = [TrialState.COMPLETE, TrialState.PRUNED] if include_pruned else [TrialState.COMPLETE]
    has_state = Col.STATE in trials.columns
    t = trials[trials[Col.STATE].astype(str).isin(states)] if has_state else trials
    v = pd.to_numeric(t[value], errors="coerce")
    return t[np.isfinite(v.to_numpy(dtype=float))]


def config_key(trials: pd.DataFrame) -> pd.Series:
    """A string key per row identifying its configuration (all params; the seed excluded)."""
    cols = [PARAM_PREFIX + n for n in param_columns(trials)]
    if not cols:
        return pd.Series(["all"] * len(trials), index=trials.index, dtype=object)
    parts = [trials[c].map(_fmt) for c in cols]
    key = parts[0].astype(str)
    for p in parts[1:]:
        key = key + "|" + p.astype(str)
    return key


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(round(v, 12))
    return str(v)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_name(name: str, *, max_len: int = 80) -> str:
    """A file-name-safe version of ``name`` (no path separators, no leading dots)."""
    safe = _SAFE.sub("_", str(name)).strip("._-")[:max_len]
    return safe or UNNAMED_STUDY

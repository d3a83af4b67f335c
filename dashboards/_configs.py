"""Per-configuration means over seeds and seed-paired differences against a baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, Direction
from ._runs import EpochChoice
from ._stats import Interval, paired_difference, seed_interval

__all__ = ["ConfigTable", "config_table", "find_baseline", "is_regularizer"]


def is_regularizer(param: str) -> bool:
    """Parameters whose zero means 'not regularized' (zoneout and dropout rates)."""
    low = param.lower()
    return "zoneout" in low or "dropout" in low


@dataclass(frozen=True)
class ConfigTable:
    """One row per configuration read at ``epoch``; best mean first.

    ``configs`` columns: ``config`` (key), ``param_*``, ``n`` (seeds), ``mean``, ``low``,
    ``high``, ``kind`` (an :class:`~dashboards._stats.IntervalKind` value), ``numbers`` (trial
    numbers), and when there is a baseline ``diff``, ``diff_low``, ``diff_high``, ``diff_n``,
    ``diff_kind`` (the seed-paired difference to it)."""

    configs: pd.DataFrame
    intervals: dict[str, Interval]
    differences: dict[str, Interval]
    baseline: str | None
    """Key of the baseline configuration (None when the study has none)."""
    baseline_reason: str
    epoch: EpochChoice
    params: list[str]

    @property
    def has_repeats(self) -> bool:
        return bool(len(self.configs) and (self.configs["n"] > 1).any())


def find_baseline(
    runs: pd.DataFrame, params: list[str], *, trial: int | None = None
) -> tuple[str | None, str]:
    """The baseline configuration's key and how it was chosen.

    ``trial`` given: that trial's configuration. Otherwise the unregularized point (every
    zoneout/dropout rate 0) when exactly one configuration is that point.
    """
    if trial is not None:
        hit = runs.loc[runs["number"] == trial, "config"]
        if hit.empty:
            return None, f"trial {trial} has no scored run"
        return str(hit.iloc[0]), f"trial {trial}'s configuration (named by the user)"
    regs = [p for p in params if is_regularizer(p)]
    if not regs:
        return None, "no zoneout/dropout rate is searched, so there is no unregularized point"
    zero = np.ones(len(runs), dtype=bool)
    for p in regs:
        zero &= pd.to_numeric(runs[PARAM_PREFIX + p], errors="coerce").to_numpy(float) == 0.0
    keys = runs.loc[zero, "config"].unique()
    if len(keys) == 1:
        names = ", ".join(f"{p} = 0" for p in regs)
        return str(keys[0]), f"the unregularized configuration ({names})"
    if len(keys) == 0:
        return None, "the study has no unregularized configuration (all rates 0)"
    return None, f"{len(keys)} configurations have all rates 0; name one as the baseline"


def config_table(
    runs_at: pd.DataFrame,
    epoch: EpochChoice,
    params: list[str],
    *,
    direction: Direction = "minimize",
    baseline_trial: int | None = None,
) -> ConfigTable:
    """Per configuration: mean over seeds with its interval, and the paired difference to the
    baseline configuration (see :func:`find_baseline`)."""
    pcols = [PARAM_PREFIX + p for p in params]
    if runs_at.empty:
        cols = ["config", *pcols, "n", "mean", "low", "high", "kind", "numbers"]
        return ConfigTable(pd.DataFrame(columns=cols), {}, {}, None, "no runs", epoch, params)
    base_key, reason = find_baseline(runs_at, params, trial=baseline_trial)
    by_seed = {k: g.groupby("seed")["value"].mean() for k, g in runs_at.groupby("config")}
    rows, intervals, diffs = [], {}, {}
    for key, grp in runs_at.groupby("config", sort=False):
        iv = seed_interval(by_seed[key].to_numpy())
        intervals[key] = iv
        row = {"config": key, **grp.iloc[0][pcols].to_dict()}
        row.update(n=iv.n, mean=iv.mean, low=iv.low, high=iv.high, kind=iv.kind.value)
        row["numbers"] = tuple(sorted(int(n) for n in grp["number"].unique()))
        if base_key is not None and base_key in by_seed:
            d = paired_difference(by_seed[key], by_seed[base_key])
            diffs[key] = d
            row.update(
                diff=d.mean, diff_low=d.low, diff_high=d.high, diff_n=d.n, diff_kind=d.kind.value
            )
        rows.append(row)
    df = pd.DataFrame(rows).sort_values("mean", ascending=direction == "minimize", kind="stable")
    if base_key is not None and base_key not in by_seed:
        reason += f"; it has no run {epoch.label}"
        base_key = None
    return ConfigTable(df.reset_index(drop=True), intervals, diffs, base_key, reason, epoch, params)

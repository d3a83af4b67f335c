"""Per-configuration means over seeds and seed-paired differences against a baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._common import PARAM_PREFIX, Direction
from ._frame import Col
from ._runs import EpochChoice
from ._stats import LEVEL, Interval, IntervalKind

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
    numbers), ``ends`` (per run in seed order: (why it ended or None, last epoch)), and when
    there is a baseline ``diff``, ``diff_low``, ``diff_high``, ``diff_n``,
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
        hit = runs.loc[runs[Col.NUMBER] == trial, "config"]
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
    # One value per (configuration, seed): a configuration run twice with a seed (a rerun grid
    # point) counts that seed once, with the mean of its runs.
    per_seed = runs_at.groupby(["config", Col.SEED], sort=False)["value"].mean()
    first = runs_at.drop_duplicates("config").set_index("config")
    df = first[pcols].copy()
    stats_ = _grouped_intervals(per_seed)
    df = df.join(stats_[["n", "mean", "low", "high", "kind"]])
    df["numbers"] = _numbers(runs_at).reindex(df.index)
    df["ends"] = _run_ends(runs_at).reindex(df.index)
    intervals = dict(zip(stats_.index, stats_["interval"], strict=True))
    diffs: dict[str, Interval] = {}
    if base_key is not None and base_key in stats_.index:
        base = per_seed.loc[base_key]
        seeds = per_seed.index.get_level_values(Col.SEED)
        diff = (per_seed - seeds.map(base).to_numpy()).dropna()
        dstats = _grouped_intervals(diff)
        diffs = dict(zip(dstats.index, dstats["interval"], strict=True))
        df = df.join(
            dstats[["mean", "low", "high", "n", "kind"]].rename(
                columns={"mean": "diff", "low": "diff_low", "high": "diff_high", "n": "diff_n",
                         "kind": "diff_kind"}
            )
        )  # fmt: skip
        df["diff_n"] = df["diff_n"].fillna(0).astype(int)
    df = df.rename_axis("config").reset_index()
    df = df.sort_values("mean", ascending=direction == "minimize", kind="stable")
    if base_key is not None and base_key not in stats_.index:
        reason += f"; it has no run {epoch.label}"
        base_key = None
    return ConfigTable(df.reset_index(drop=True), intervals, diffs, base_key, reason, epoch, params)


def _per_config(keys: pd.Series, items: list[object]) -> pd.Series:
    """``items`` (one per row) gathered into a tuple per configuration key, in row order: one
    pass over the rows (a groupby-apply calls Python once per configuration)."""
    grouped: dict[object, list[object]] = {}
    for key, item in zip(keys.tolist(), items, strict=True):
        grouped.setdefault(key, []).append(item)
    out = pd.Series([tuple(v) for v in grouped.values()], index=list(grouped), dtype=object)
    return out.rename_axis("config")


def _numbers(runs_at: pd.DataFrame) -> pd.Series:
    """Per configuration, its trial numbers, ascending and each once."""
    grouped = _per_config(runs_at["config"], [int(n) for n in runs_at[Col.NUMBER]])
    return grouped.map(lambda a: tuple(sorted(set(a))))


def _run_ends(runs_at: pd.DataFrame) -> pd.Series:
    """Per configuration, each run's (why it ended, last epoch), in seed order."""
    ended = runs_at[Col.ENDED] if Col.ENDED in runs_at else pd.Series(None, runs_at.index)
    frame = runs_at.assign(_ended=ended).sort_values(["config", Col.SEED], kind="stable")
    items = [
        (None if e is None or e != e else str(e), int(r))
        for e, r in zip(frame["_ended"], frame["reached"], strict=True)
    ]
    return _per_config(frame["config"], items)


def _grouped_intervals(per_seed: pd.Series, level: float = LEVEL) -> pd.DataFrame:
    """:func:`~dashboards._stats.seed_interval` of every group of ``per_seed`` (first index
    level), vectorized: columns ``n``, ``mean``, ``low``, ``high``, ``kind``, ``interval``."""
    g = per_seed.groupby(level=0, sort=False)
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "sd": g.std(ddof=1),
                        "lo": g.min(), "hi": g.max()})  # fmt: skip
    n = out["n"].to_numpy()
    t = np.where(n >= 3, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
    half = t * out["sd"].to_numpy() / np.sqrt(n)
    mean = out["mean"].to_numpy()
    student = n >= 3
    out["low"] = np.where(student, mean - half, np.where(n == 2, out["lo"], mean))
    out["high"] = np.where(student, mean + half, np.where(n == 2, out["hi"], mean))
    two_or_one = np.where(n == 2, IntervalKind.TWO_VALUES.value, IntervalKind.SINGLE.value)
    kinds = np.where(student, IntervalKind.STUDENT_T.value, two_or_one)
    out["kind"] = kinds
    # The seeds' own values, in seed order, for n = 2 (both shown) and for the record.
    order = per_seed.index.get_level_values(0)
    codes = pd.Index(out.index).get_indexer(order)
    srt = np.argsort(codes, kind="stable")
    vals = np.split(per_seed.to_numpy(dtype=float)[srt], np.cumsum(n)[:-1])
    out["interval"] = [
        Interval(float(m), float(lo), float(hi), int(k), IntervalKind(kind), tuple(v.tolist()))
        for m, lo, hi, k, kind, v in zip(mean, out["low"], out["high"], n, kinds, vals, strict=True)
    ]
    return out

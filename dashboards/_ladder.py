"""A scale ladder: how well did a small study's ranking of configurations predict a larger one's?

A small study (few epochs, little data) finds configurations; its top K are promoted into a
larger study (same search parameters, larger base) and run there with the large study's seeds.
:func:`scale_agreement` compares the configurations present at both scales: their means over
seeds, their ranks, Kendall's tau-b and Spearman's rho between the two scales' means with a
bootstrap-over-seeds interval, where the small scale's best lands at the large scale and what
picking it cost there (its regret, paired by seed). :func:`plot_scale_agreement` and
:func:`scale_agreement_markdown` render it.

What the rank-correlation interval covers (see :func:`scale_agreement`): the rank agreement
between the configurations' means *over as many seeds as were run at each scale*, in
expectation over the seeds' noise - not the agreement between noise-free means, which seed
noise pulls toward 0 and which no interval here claims to cover.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from ._common import Direction, MetricInfo
from ._fig_style import LAYOUT as _LAYOUT
from ._fig_style import metric_axis as _metric_axis
from ._fig_style import nothing_to_draw
from ._fig_style import titled as _title
from ._frame import Col
from ._stats import LEVEL, Interval, IntervalKind, paired_difference, seed_interval
from ._summary import _md_escape

__all__ = [
    "BOOTSTRAP_LEVEL",
    "MIN_BOOTSTRAP_SEEDS",
    "ConfigScales",
    "ScaleAgreement",
    "plot_scale_agreement",
    "scale_agreement",
    "scale_agreement_markdown",
]

#: Level of the bootstrap interval of tau and rho. 90%, not the report's 95%: with the 3-5 seeds
#: a scale usually has there are only C(2n-1, n) distinct resamples of a scale's seeds (10 for 3
#: seeds, 126 for 5), and the 2.5%/97.5% quantiles of so lumpy a distribution rest on a handful
#: of resamples; the 5%/95% ones are steadier, and it is 90% that was checked. On synthetic
#: ladders (8 configurations; 3, 5 or 10 seeds per scale; each run's own noise 0.15-1.5 times
#: the spread of the true means; 300 ladders a cell) the 90% interval covered its target 82-99%
#: of the time - except where that target lies within 0.01 of a value tau can take and the
#: interval collapses onto that value (57-59%; within half a tau step of it, 96-100%). At 95%
#: (5 seeds) it covered 96-98%. See tests/dashboards/test_dash_ladder.py for the check that runs.
BOOTSTRAP_LEVEL = 0.90
#: Fewest seeds (per configuration, at each scale) the bootstrap interval is computed from. With
#: 1 seed there is no seed noise to resample; with 2 the resamples are {a, a}, {a, b}, {b, b}
#: and the "90%" interval covered its target only 68-84% of the time in simulation - as for a
#: configuration's own mean (seed_interval), no interval is claimed for 2 seeds.
MIN_BOOTSTRAP_SEEDS = 3
_Scale = Literal["small", "large"]
# Bootstrap replicates x configuration pairs held in memory at once.
_CHUNK_CELLS = 2_000_000


class ConfigScales(NamedTuple):
    """One configuration at both scales (rank 1 = best; tied means share the better rank)."""

    config: str
    small: Interval
    large: Interval
    small_rank: int
    large_rank: int


@dataclass(frozen=True)
class ScaleAgreement:
    """How well the small scale's scores predicted the large scale's (see
    :func:`scale_agreement`). ``configs`` is ordered by large-scale mean, best first."""

    configs: tuple[ConfigScales, ...]
    dropped: dict[str, str]
    """Configuration -> why it is not compared (present at one scale only, no finite value)."""
    n_configs: int
    small_seeds: int
    """Distinct seeds among the compared configurations at the small scale."""
    large_seeds: int
    small_seeds_shared: bool
    """Whether every compared configuration has the same seeds at the small scale."""
    large_seeds_shared: bool
    kendall_tau: float | None
    """scipy.stats.kendalltau (tau-b) between the configurations' means at the two scales."""
    spearman_rho: float | None
    """scipy.stats.spearmanr between the configurations' means at the two scales."""
    tau_interval: tuple[float, float] | None
    rho_interval: tuple[float, float] | None
    interval_label: str
    """What the interval is, e.g. '90% percentile bootstrap over seeds'."""
    interval_covers: str
    """What the interval is an interval for (one sentence)."""
    rank_reason: str | None
    """Why tau and rho are not computed (None when they are)."""
    interval_reason: str | None
    """Why their intervals are not computed (None when they are)."""
    small_best: str | None
    """The configuration with the best small-scale mean."""
    small_best_large_rank: int | None
    """Its rank at the large scale (1 = best)."""
    large_best: str | None
    regret: Interval | None
    """Large-scale score of the small scale's best minus the large scale's best's (sign-adjusted:
    positive = worse), paired by seed; a :class:`~dashboards.Interval` (95% Student-t for 3+
    paired seeds)."""
    regret_note: str | None
    direction: Direction = "minimize"
    level: float = BOOTSTRAP_LEVEL
    n_boot: int = 0
    resampling: Literal["paired", "per-configuration", "none"] = "none"
    """'paired': one resampled seed set per scale and replicate, used for every configuration;
    'per-configuration': seeds resampled within each configuration (its seeds differ)."""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _covers_text(n_small: int, n_large: int) -> str:
    return (
        "the rank agreement between the configurations' means over "
        f"{_seeds(n_small)} at the small scale and {_seeds(n_large)} at the large scale, in "
        "expectation over the seeds' noise (what a rerun of these configurations with fresh "
        "seeds of the same counts would show on average); not the agreement of noise-free "
        "means, which seed noise pulls toward 0"
    )


def _seeds(n: int) -> str:
    return f"{n} seed{'' if n == 1 else 's'}"


def scale_agreement(
    small: pd.DataFrame,
    large: pd.DataFrame,
    *,
    n_boot: int = 2000,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
    min_configs: int = 4,
    direction: Direction = "minimize",
) -> ScaleAgreement:
    """Compare the configurations scored at both scales.

    ``small`` and ``large``: one row per (configuration, seed) with columns ``config`` (a key),
    ``seed`` and ``value`` (a run's score: its best validation value up to where it stopped).
    Rows without a finite value are left out; a configuration is compared when it has a finite
    value at both scales, and ``dropped`` says why each other one is not. Several rows for one
    (configuration, seed) are averaged.

    Kendall's tau-b and Spearman's rho are scipy's, between the configurations' mean scores at
    the two scales (both are unchanged when both scales' scores change sign, so ``direction``
    only matters for ranks, the best and the regret). Not computed with fewer than
    ``min_configs`` configurations, or when one scale's means are all equal (``rank_reason``).

    Their interval, a ``level`` percentile bootstrap over seeds with ``n_boot`` replicates: in
    each replicate the seeds are resampled with replacement within each scale - one resampled
    seed set per scale, used for every configuration, since a seed is the same data order and
    initialisation in every configuration at a scale - the means recomputed and tau and rho
    with them. Each configuration's per-seed deviations from its mean are first scaled by
    sqrt(n / (n - 1)) so that a resampled mean varies as much as the sample variance says (the
    plain bootstrap's (n - 1) / n of it under-covered with 3-4 seeds). Where the configurations
    at a scale do not all have the same seeds, each configuration's seeds are resampled on their
    own instead (``resampling``, ``notes``): the seed effect shared across configurations then
    counts as noise and the interval is wider. Not computed with fewer than 3 seeds for some
    configuration at a scale (``interval_reason``).

    What the interval covers: the tau (rho) between the configurations' means over as many
    seeds as were run at each scale, in expectation over the seeds' noise - the agreement a
    rerun of the same configurations with fresh seeds of the same counts shows on average. Not
    the tau between the noise-free configuration means: seed noise pulls the observed tau toward
    0 (far toward it when configurations differ by less than the noise), the resamples carry
    that noise again, and nothing here undoes it; more seeds bring the two together. Only seeds
    are resampled: the configurations are those promoted, chosen for being the small scale's
    best, so this is the agreement within them - not over the search space - and their
    small-scale scores are the ones they were selected on. How often it covered that target in
    simulation: see :data:`BOOTSTRAP_LEVEL`.

    The regret is the large-scale score of the small scale's best configuration minus that of
    the large scale's best, paired by seed (:func:`~dashboards.paired_difference`, its
    Student-t interval); the large scale's best is picked on the same seeds, so the regret is,
    if anything, overstated. 0 when the small scale's best is also the large scale's.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, not {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level}")
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}")
    sign = 1.0 if direction == "minimize" else -1.0
    notes: list[str] = []
    wide_small, bad_small = _by_seed(small, "small")
    wide_large, bad_large = _by_seed(large, "large")
    for n_bad, scale in ((bad_small, "small"), (bad_large, "large")):
        if n_bad:
            notes.append(
                f"{n_bad} {scale}-scale run{' was' if n_bad == 1 else 's were'} left out: "
                "no finite value."
            )
    common = sorted(set(wide_small.index) & set(wide_large.index))
    dropped = _dropped(small, large, wide_small, wide_large, set(common))
    ws = wide_small.loc[common].dropna(axis=1, how="all")
    wl = wide_large.loc[common].dropna(axis=1, how="all")
    k = len(common)
    label = f"{level:.0%} percentile bootstrap over seeds"
    small_shared = not bool(ws.isna().to_numpy().any())
    large_shared = not bool(wl.isna().to_numpy().any())
    if k == 0:
        why = "no configuration has a finite value at both scales"
        return ScaleAgreement(
            configs=(),
            dropped=dropped,
            n_configs=0,
            small_seeds=0,
            large_seeds=0,
            small_seeds_shared=small_shared,
            large_seeds_shared=large_shared,
            kendall_tau=None,
            spearman_rho=None,
            tau_interval=None,
            rho_interval=None,
            interval_label=label,
            interval_covers=_covers_text(0, 0),
            rank_reason=f"rank statistics are not computed: {why}",
            interval_reason=f"no interval: {why}",
            small_best=None,
            small_best_large_rank=None,
            large_best=None,
            regret=None,
            regret_note=None,
            direction=direction,
            level=level,
            notes=tuple(notes),
        )
    m_small = ws.mean(axis=1).to_numpy(float)
    m_large = wl.mean(axis=1).to_numpy(float)
    r_small = stats.rankdata(sign * m_small, method="min").astype(int)
    r_large = stats.rankdata(sign * m_large, method="min").astype(int)
    order = sorted(range(k), key=lambda i: (sign * m_large[i], common[i]))
    configs = tuple(
        ConfigScales(
            common[i],
            seed_interval(ws.iloc[i].to_numpy(float)),
            seed_interval(wl.iloc[i].to_numpy(float)),
            int(r_small[i]),
            int(r_large[i]),
        )
        for i in order
    )
    # Best at each scale; ties broken by the configuration key (said in a note).
    i_small = min(range(k), key=lambda i: (sign * m_small[i], common[i]))
    i_large = min(range(k), key=lambda i: (sign * m_large[i], common[i]))
    for scale, r, i in (("small", r_small, i_small), ("large", r_large, i_large)):
        n_tied = int((r == 1).sum())
        if n_tied > 1:
            notes.append(
                f"{n_tied} configurations tie for the best {scale}-scale mean; "
                f"{common[i]} (first by key) is taken as the {scale} scale's best."
            )
    if len(set(r_small)) < k or len(set(r_large)) < k:
        notes.append("Tied means share the better rank; tau-b and rho account for the ties.")
    regret, regret_note = _regret(wl, common[i_small], common[i_large], sign)

    tau = rho = None
    tau_iv = rho_iv = None
    rank_reason = interval_reason = None
    resampling: Literal["paired", "per-configuration", "none"] = "none"
    constant = [s for s, m in (("small", m_small), ("large", m_large)) if np.ptp(m) == 0]
    if k < min_configs:
        rank_reason = (
            f"rank statistics are not computed: {k} configuration{'' if k == 1 else 's'} at "
            f"both scales; rank statistics need at least {min_configs}"
        )
    elif constant:
        rank_reason = (
            "rank statistics are not computed: every configuration has the same mean at the "
            f"{' and '.join(constant)} scale{'s' if len(constant) > 1 else ''}"
        )
    else:
        tau, rho = _rank_stats(m_small, m_large)
    if rank_reason is not None:
        interval_reason = "no interval: " + rank_reason.removeprefix(
            "rank statistics are not computed: "
        )
    else:
        interval_reason = _too_few_seeds(ws, wl, level)
        if interval_reason is None:
            shared = small_shared and large_shared
            resampling = "paired" if shared else "per-configuration"
            if not shared:
                label += ", resampled per configuration"
                notes.append(
                    "Not every configuration has the same seeds at "
                    + " and ".join(
                        s
                        for s, ok in (
                            ("the small scale", small_shared),
                            ("the large scale", large_shared),
                        )
                        if not ok
                    )
                    + ", so the bootstrap resampled each configuration's seeds on their own: "
                    "the seed effect shared across configurations then counts as noise and the "
                    "interval is wider than a paired one."
                )
            rng = np.random.default_rng(seed)
            boot_s = _resampled_means(ws, n_boot, rng, paired=resampling == "paired")
            boot_l = _resampled_means(wl, n_boot, rng, paired=resampling == "paired")
            taus, rhos = _rank_stats_rows(boot_s, boot_l)
            tau_iv, n_bad_tau = _percentile(taus, level)
            rho_iv, n_bad_rho = _percentile(rhos, level)
            if max(n_bad_tau, n_bad_rho):
                notes.append(
                    f"{max(n_bad_tau, n_bad_rho)} of {n_boot} bootstrap replicates had every "
                    "mean tied at one scale (no rank correlation) and were left out."
                )
            if tau_iv is None or rho_iv is None:
                interval_reason = "no interval: every bootstrap replicate had tied means"
    return ScaleAgreement(
        configs=configs,
        dropped=dropped,
        n_configs=k,
        small_seeds=int(ws.shape[1]),
        large_seeds=int(wl.shape[1]),
        small_seeds_shared=small_shared,
        large_seeds_shared=large_shared,
        kendall_tau=tau,
        spearman_rho=rho,
        tau_interval=tau_iv,
        rho_interval=rho_iv,
        interval_label=label,
        interval_covers=_covers_text(
            int(min(c.small.n for c in configs)), int(min(c.large.n for c in configs))
        ),
        rank_reason=rank_reason,
        interval_reason=interval_reason,
        small_best=common[i_small],
        small_best_large_rank=int(r_large[i_small]),
        large_best=common[i_large],
        regret=regret,
        regret_note=regret_note,
        n_boot=n_boot if resampling != "none" else 0,
        resampling=resampling,
        direction=direction,
        level=level,
        notes=tuple(notes),
    )


def _by_seed(frame: pd.DataFrame, scale: _Scale) -> tuple[pd.DataFrame, int]:
    """Configuration x seed table of finite values (mean of duplicates); the count of rows left
    out for having no finite value."""
    missing = {"config", Col.SEED, "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"the {scale}-scale frame lacks column(s) {sorted(missing)}")
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(values)
    f = pd.DataFrame(
        {
            "config": frame["config"].astype(str).to_numpy()[ok],
            Col.SEED: frame[Col.SEED].to_numpy()[ok],
            "value": values[ok],
        }
    )
    wide = f.groupby(["config", Col.SEED])["value"].mean().unstack(Col.SEED)
    return wide.sort_index(axis=1), int((~ok).sum())


def _dropped(
    small: pd.DataFrame,
    large: pd.DataFrame,
    wide_small: pd.DataFrame,
    wide_large: pd.DataFrame,
    common: set[str],
) -> dict[str, str]:
    all_small = set(small["config"].astype(str))
    all_large = set(large["config"].astype(str))
    out: dict[str, str] = {}
    for c in sorted((all_small | all_large) - common):
        if c not in all_large:
            out[c] = "only at the small scale (not promoted, or not run at the large scale)"
        elif c not in all_small:
            out[c] = "only at the large scale (no small-scale score)"
        else:
            lacking = [
                s for s, w in (("small", wide_small), ("large", wide_large)) if c not in w.index
            ]
            out[c] = f"no finite value at the {' and '.join(lacking)} scale"
    return out


def _regret(
    wl: pd.DataFrame, small_best: str, large_best: str, sign: float
) -> tuple[Interval, str | None]:
    picked = wl.loc[small_best].dropna()
    best = wl.loc[large_best].dropna()
    if small_best == large_best:
        # paired_difference of a configuration with itself: 0 on every seed, same n and kind.
        return paired_difference(picked, picked), (
            "the small scale's best is also the large scale's best: regret 0"
        )
    first, second = (picked, best) if sign > 0 else (best, picked)
    iv = paired_difference(first, second)
    if iv.n == 0:
        return iv, "the two configurations share no large-scale seed: no paired regret"
    return iv, None


def _too_few_seeds(ws: pd.DataFrame, wl: pd.DataFrame, level: float) -> str | None:
    for scale, w in (("small", ws), ("large", wl)):
        n = int(w.notna().sum(axis=1).min())
        some = "" if int(w.notna().sum(axis=1).max()) == n else " for some configurations"
        if n <= 1:
            return (
                f"no interval: {_seeds(n)} at the {scale} scale{some}; "
                "no seed noise can be estimated from 1 seed"
            )
        if n < MIN_BOOTSTRAP_SEEDS:
            return (
                f"no interval: {_seeds(n)} at the {scale} scale{some}; a bootstrap over "
                f"{n} seeds is not a {level:.0%} interval (at least {MIN_BOOTSTRAP_SEEDS} needed)"
            )
    return None


def _resampled_means(
    wide: pd.DataFrame, n_boot: int, rng: np.random.Generator, *, paired: bool
) -> np.ndarray:
    """``(n_boot, configurations)`` means over resampled seeds. ``paired``: one resample of
    the seed columns per replicate, shared by every configuration (needs a full table)."""
    v = _variance_corrected(wide.to_numpy(float))
    k, n = v.shape
    if paired:
        idx = rng.integers(0, n, size=(n_boot, n))
        out = np.empty((n_boot, k))
        step = max(1, _CHUNK_CELLS // max(k * n, 1))
        for start in range(0, n_boot, step):
            out[start : start + step] = v[:, idx[start : start + step]].mean(axis=2).T
        return out
    out = np.empty((n_boot, k))
    for j in range(k):
        own = v[j][np.isfinite(v[j])]
        out[:, j] = own[rng.integers(0, own.size, size=(n_boot, own.size))].mean(axis=1)
    return out


def _variance_corrected(v: np.ndarray) -> np.ndarray:
    """Each row's (configuration's) deviations from its mean scaled by sqrt(n / (n - 1)), n its
    finite values: a mean over n seeds resampled from these has variance s^2 / n (s the usual
    sample sd) instead of the plain bootstrap's (n - 1) / n of it, too narrow with 3-5 seeds. A
    seed effect shared by the configurations is scaled alike in each and still cancels."""
    n = np.isfinite(v).sum(axis=1, keepdims=True)
    m = np.nanmean(v, axis=1, keepdims=True)
    scale = np.sqrt(n / np.maximum(n - 1, 1))
    return m + scale * (v - m)


def _rank_stats(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        tau = float(stats.kendalltau(x, y).statistic)
        rho = float(stats.spearmanr(x, y).statistic)
    return tau, rho


def _kendall_tau_b_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of ``x`` and ``y`` (``(B, K)``); NaN where a row is
    constant. Equals scipy.stats.kendalltau row by row, ties included."""
    k = x.shape[1]
    i, j = np.triu_indices(k, 1)
    out = np.empty(x.shape[0])
    step = max(1, _CHUNK_CELLS // max(i.size, 1))
    for start in range(0, x.shape[0], step):
        xs, ys = x[start : start + step], y[start : start + step]
        sx = np.sign(xs[:, i] - xs[:, j])
        sy = np.sign(ys[:, i] - ys[:, j])
        # concordant - discordant over sqrt(untied-in-x pairs * untied-in-y pairs)
        den = np.sqrt(np.abs(sx).sum(axis=1) * np.abs(sy).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + step] = (sx * sy).sum(axis=1) / den
    return out


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (Pearson of average ranks); NaN where a row is
    constant. Equals scipy.stats.spearmanr row by row, ties included."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / den


def _rank_stats_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _kendall_tau_b_rows(x, y), _spearman_rows(x, y)


def _percentile(values: np.ndarray, level: float) -> tuple[tuple[float, float] | None, int]:
    ok = values[np.isfinite(values)]
    n_bad = int(values.size - ok.size)
    if ok.size == 0:
        return None, n_bad
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(ok, [a, 1.0 - a])
    return (float(lo), float(hi)), n_bad


# ---------------------------------------------------------------------------------------------
# Rendering


def _stat_text(value: float | None, iv: tuple[float, float] | None) -> str:
    if value is None:
        return "n/a"
    if iv is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{iv[0]:.3f}, {iv[1]:.3f}]"


def _rank_line(a: ScaleAgreement) -> str:
    """'Kendall τ-b = 0.714 [0.5, 0.9], Spearman ρ = ... (90% percentile bootstrap ...)' or
    why not."""
    if a.kendall_tau is None:
        return a.rank_reason or "rank statistics are not computed"
    text = (
        f"Kendall τ-b = {_stat_text(a.kendall_tau, a.tau_interval)}, "
        f"Spearman ρ = {_stat_text(a.spearman_rho, a.rho_interval)}"
    )
    if a.tau_interval is not None:
        return f"{text} ({a.interval_label})"
    return f"{text}; {a.interval_reason}"


def _spread_name(ivs: list[Interval]) -> str:
    """What a scale's error bars are, named for what they are."""
    kinds = {iv.kind for iv in ivs}
    ns = sorted({iv.n for iv in ivs})
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    parts = []
    if IntervalKind.STUDENT_T in kinds:
        parts.append(f"{LEVEL:.0%} Student-t over {n} seeds")
    if IntervalKind.TWO_VALUES in kinds:
        parts.append("range of the 2 seeds")
    if IntervalKind.SINGLE in kinds:
        parts.append("1 seed: no bar")
    return " / ".join(parts) or "no bar"


def _short_key(key: str, width: int = 30) -> str:
    """A configuration's label beside its point: 'name=value, ...' keys with names shortened
    (z_c, z_h for the zoneout rates, initials for other snake_case names), then cut to
    ``width`` characters; the whole key is on hover."""
    parts = key.split(", ")
    if all("=" in p for p in parts):
        key = ", ".join(_short_param(p.split("=", 1)[0]) + "=" + p.split("=", 1)[1] for p in parts)
    return key if len(key) <= width else key[: width - 1] + "…"


def _short_param(name: str) -> str:
    known = {"zoneout_cell": "z_c", "zoneout_hidden": "z_h"}
    if name in known:
        return known[name]
    words = [w for w in name.split("_") if w]
    return "".join(w[0] for w in words) if len(words) > 1 else name


def _bars(ivs: list[Interval]) -> dict[str, object]:
    has = [iv.kind in (IntervalKind.STUDENT_T, IntervalKind.TWO_VALUES) for iv in ivs]
    return dict(
        type="data",
        symmetric=False,
        array=[iv.high - iv.mean if h else 0.0 for iv, h in zip(ivs, has, strict=True)],
        arrayminus=[iv.mean - iv.low if h else 0.0 for iv, h in zip(ivs, has, strict=True)],
        color="#888",
        thickness=1.2,
        width=3,
    )


# The width labels are placed for: write_pngs' default (an HTML page may draw it wider).
_WIDTH, _BASE_HEIGHT = 1000, 600
_MARGIN = dict(l=80, r=40, b=120)
_LABEL_FONT = 10
# Label box size in pixels: about 0.6 em per character at the label's font size.
_CHAR_PX, _LINE_PX = 0.6 * _LABEL_FONT, _LABEL_FONT + 4


def plot_scale_agreement(
    agreement: ScaleAgreement, metric: MetricInfo, *, small_label: str, large_label: str
) -> go.Figure:
    """Each configuration's large-scale mean against its small-scale mean, with the seeds'
    spread on both axes (named for what it is), its key on hover and beside it, the small
    scale's best marked; n, tau and rho with their interval (or why not) in the subtitle."""
    a = agreement
    title = f"Scale agreement: {small_label} → {large_label}"
    if not a.configs:
        why = a.rank_reason or "no configuration at both scales"
        return nothing_to_draw(title, why.removeprefix("rank statistics are not computed: "))
    cs = list(a.configs)
    small = [c.small for c in cs]
    large = [c.large for c in cs]
    x = np.array([iv.mean for iv in small])
    y = np.array([iv.mean for iv in large])
    spread_x, spread_y = _spread_name(small), _spread_name(large)
    texts = [_short_key(c.config) for c in cs]
    hover = [
        f"<b>{c.config}</b><br>{small_label}: {c.small.text()} (rank {c.small_rank})"
        f"<br>{large_label}: {c.large.text()} (rank {c.large_rank})"
        for c in cs
    ]
    sub = _subtitle(a, metric, small, large, small_label, large_label)
    ttl = _title(title, sub)
    n_lines = 1 + ttl["subtitle"]["text"].count("<br>")
    top = 60 + 17 * n_lines
    height = _BASE_HEIGHT + 17 * n_lines
    ttl.update(y=1.0 - 18 / height, yref="container", yanchor="top")
    x_range = _range(small, metric.log_axis)
    y_range = _range(large, metric.log_axis)
    plot_px = (_WIDTH - _MARGIN["l"] - _MARGIN["r"], height - top - _MARGIN["b"])
    offsets = _label_offsets(
        x, y, texts, x_range, y_range, plot_px, metric.log_axis, bars=(small, large)
    )
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name=f"configuration: mean over seeds; bars: x {spread_x}, y {spread_y}",
            marker=dict(size=10, color="rgb(31, 119, 180)", line=dict(width=1, color="#222")),
            error_x=_bars(small),
            error_y=_bars(large),
            hovertext=hover,
            hoverinfo="text",
        )
    )
    for xi, yi, text, (dx, dy) in zip(x, y, texts, offsets, strict=True):
        fig.add_annotation(
            x=math.log10(xi) if metric.log_axis else xi,
            y=math.log10(yi) if metric.log_axis else yi,
            text=text,
            ax=dx,
            ay=-dy,  # plotly's ay points down
            showarrow=True,
            arrowhead=0,
            arrowwidth=0.8,
            arrowcolor="#999",
            standoff=6,
            font=dict(size=_LABEL_FONT, color="#333"),
            bgcolor="rgba(255, 255, 255, 0.75)",
            borderpad=1,
        )
    best = next(c for c in cs if c.config == a.small_best)
    fig.add_trace(
        go.Scatter(
            x=[best.small.mean],
            y=[best.large.mean],
            mode="markers",
            name=(
                f"best at {small_label}: rank {a.small_best_large_rank} of {a.n_configs} "
                f"at {large_label}"
            ),
            marker=dict(symbol="star", size=18, color="#d62728", line=dict(width=1, color="#fff")),
            hovertext=[hover[cs.index(best)]],
            hoverinfo="text",
        )
    )
    x_axis, y_axis = _axis(metric, small_label, x_range), _axis(metric, large_label, y_range)
    fig.update_layout(
        title=ttl,
        xaxis=x_axis,
        yaxis=y_axis,
        legend=dict(orientation="h", yanchor="top", y=-0.14, x=0.0),
        **{**_LAYOUT, "margin": dict(**_MARGIN, t=top)},
        height=height,
    )
    return fig


def _subtitle(
    a: ScaleAgreement,
    metric: MetricInfo,
    small: list[Interval],
    large: list[Interval],
    small_label: str,
    large_label: str,
) -> str:
    seeds = (
        f"{_seed_count(small, a.small_seeds)} at {small_label}, "
        f"{_seed_count(large, a.large_seeds)} at {large_label}"
    )
    sub = f"{a.n_configs} configurations at both scales ({seeds}); {_rank_line(a)}"
    if a.regret is not None:
        if a.small_best == a.large_best:
            sub += f"; the best at {small_label} is also the best at {large_label} (regret 0)"
        else:
            sub += f"; regret of picking the best at {small_label}: {a.regret.text('+.4f')}"
    if a.dropped:
        n = len(a.dropped)
        sub += f"; {n} configuration{'s' if n > 1 else ''} at one scale only, not compared"
    better = "lower is better" if metric.direction == "minimize" else "higher is better"
    return sub + f"; {better} on both axes"


def _range(ivs: list[Interval], log: bool) -> tuple[float, float]:
    """Axis range spanning every bar, padded 6% each side (in log10 on a log axis)."""
    lo = np.array([iv.low for iv in ivs], dtype=float)
    hi = np.array([iv.high for iv in ivs], dtype=float)
    if log:
        lo, hi = np.log10(lo), np.log10(hi)
    a, b = float(np.nanmin(lo)), float(np.nanmax(hi))
    pad = 0.06 * (b - a) if b > a else (0.05 * abs(a) or 0.5)
    return a - pad, b + pad


# Directions a label may sit in from its point, nearest first; each at two distances.
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))
_GAPS = (10.0, 32.0)


def _label_offsets(
    x: np.ndarray,
    y: np.ndarray,
    texts: list[str],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    plot_px: tuple[int, int],
    log: bool,
    *,
    bars: tuple[list[Interval], list[Interval]] | None = None,
) -> list[tuple[float, float]]:
    """Pixel offset (right, up) of each label's centre from its point, chosen greedily so
    labels stay inside the plot and overlap each other, the markers and (less) the error bars
    as little as the candidates allow; a far place costs a little more than a near one. Pixel
    sizes are estimates (the label's font, the figure's own size)."""

    def to_px(v: np.ndarray, rng: tuple[float, float], size: int) -> np.ndarray:
        v = np.log10(v) if log else v
        return (v - rng[0]) / (rng[1] - rng[0]) * size

    px, py = to_px(x, x_range, plot_px[0]), to_px(y, y_range, plot_px[1])
    r = 9.0  # marker radius
    markers = [(cx - r, cy - r, cx + r, cy + r) for cx, cy in zip(px, py, strict=True)]
    lines: list[tuple[float, float, float, float]] = []
    if bars is not None:
        for ivs, horizontal in ((bars[0], True), (bars[1], False)):
            rng_, size = (x_range, plot_px[0]) if horizontal else (y_range, plot_px[1])
            lo = to_px(np.array([iv.low for iv in ivs]), rng_, size)
            hi = to_px(np.array([iv.high for iv in ivs]), rng_, size)
            for k in range(len(ivs)):
                if horizontal:
                    lines.append((lo[k], py[k] - 1.5, hi[k], py[k] + 1.5))
                else:
                    lines.append((px[k] - 1.5, lo[k], px[k] + 1.5, hi[k]))
    placed: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(texts)
    # Crowded points first: they have the fewest good places.
    crowd = [float(np.sum(np.hypot(px - cx, py - cy) < 80)) for cx, cy in zip(px, py, strict=True)]
    for i in sorted(range(len(texts)), key=lambda i: -crowd[i]):
        w, h = _CHAR_PX * len(texts[i]) + 4, _LINE_PX
        best_cost, best = math.inf, (0.0, 0.0)
        for gap in _GAPS:
            for sx, sy in _DIRECTIONS:
                dx = sx * (r + gap + w / 2) if sx else 0.0
                dy = sy * (r + gap + h / 2) if sy else 0.0
                box = (
                    px[i] + dx - w / 2,
                    py[i] + dy - h / 2,
                    px[i] + dx + w / 2,
                    py[i] + dy + h / 2,
                )
                cost = sum(_overlap(box, b) for b in placed)
                cost += sum(_overlap(box, m) for m in markers)
                cost += 0.5 * sum(_overlap(box, line) for line in lines)
                outside = (
                    max(0.0, -box[0]) + max(0.0, box[2] - plot_px[0])
                    + max(0.0, -box[1]) + max(0.0, box[3] - plot_px[1])
                )  # fmt: skip
                cost += 50.0 * outside * h + (gap - _GAPS[0])
                if cost < best_cost:
                    best_cost, best = cost, (float(dx), float(dy))
        out[i] = best
        dx, dy = best
        placed.append(
            (px[i] + dx - w / 2, py[i] + dy - h / 2, px[i] + dx + w / 2, py[i] + dy + h / 2)
        )
    return out


def _centred(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return max(dx, 0.0) * max(dy, 0.0)


def _seed_count(ivs: list[Interval], distinct: int) -> str:
    ns = sorted({iv.n for iv in ivs})
    if len(ns) == 1:
        return f"{_seeds(ns[0])}"
    return f"{ns[0]}-{ns[-1]} seeds per configuration ({distinct} distinct)"


def _axis(metric: MetricInfo, scale_label: str, rng: tuple[float, float]) -> dict[str, object]:
    axis = _metric_axis(metric)
    axis["title"] = dict(text=f"{metric.axis_title} at {scale_label}")
    axis["range"] = list(rng)
    return axis


def _md_stat(value: float | None, iv: tuple[float, float] | None, a: ScaleAgreement) -> str:
    if value is None:
        return "not computed"
    if iv is None:
        return f"{value:.3f} ({a.interval_reason})"
    return f"{value:.3f} [{iv[0]:.3f}, {iv[1]:.3f}] ({a.interval_label})"


def scale_agreement_markdown(
    agreement: ScaleAgreement, metric: MetricInfo, small_label: str, large_label: str
) -> str:
    """A Markdown section: the configurations with both scores and ranks, tau and rho with
    their interval and what it covers, where the small scale's best ranks, its regret."""
    a = agreement
    sl, ll = _md_escape(small_label), _md_escape(large_label)
    out = [f"## Scale agreement: {sl} → {ll}", ""]
    if not a.configs:
        out.append(f"- {_md_escape(_cap(a.rank_reason or 'nothing to compare'))}.")
        out += [f"- Not compared: {_code(c)} ({why})." for c, why in a.dropped.items()]
        return "\n".join(out) + "\n"
    small = [c.small for c in a.configs]
    large = [c.large for c in a.configs]
    out += [
        f"{a.n_configs} configurations at both scales; {_seed_count(small, a.small_seeds)} at "
        f"{sl}, {_seed_count(large, a.large_seeds)} at {ll}. Each run is scored by its best "
        f"{metric.title} up to where it stopped; a configuration by its mean over seeds "
        f"({LEVEL:.0%} Student-t interval for 3 or more seeds, both values for 2). Rank 1 = "
        f"best ({'lowest' if metric.direction == 'minimize' else 'highest'}).",
        "",
        f"| configuration | {sl} {metric.name} | {sl} rank | {ll} {metric.name} | {ll} rank |",
        "|---|---|---|---|---|",
    ]
    for c in a.configs:
        mark = f" ★ best at {sl}" if c.config == a.small_best else ""
        out.append(
            f"| {_code(c.config, in_table=True)}{mark} | {c.small.text()} | {c.small_rank} | "
            f"{c.large.text()} | {c.large_rank} |"
        )
    out.append("")
    if a.kendall_tau is None:
        out.append(f"- {_cap(a.rank_reason or 'rank statistics are not computed')}.")
    else:
        out.append(
            f"- Kendall's τ-b between the two scales' means: "
            f"{_md_stat(a.kendall_tau, a.tau_interval, a)}."
        )
        out.append(f"- Spearman's ρ: {_md_stat(a.spearman_rho, a.rho_interval, a)}.")
        if a.tau_interval is not None:
            how = (
                "at each scale one resampled seed set, shared by every configuration (paired)"
                if a.resampling == "paired"
                else "each configuration's seeds resampled on their own"
            )
            out.append(
                f"- The interval is for {a.interval_covers}. {a.n_boot} resamples; {how}; each "
                "configuration's deviations from its mean scaled by √(n/(n−1)) so that a "
                "resampled mean varies as much as the sample variance says."
            )
    if a.small_best is not None:
        out.append(
            f"- The best configuration at {sl}, {_code(a.small_best)}, ranks "
            f"{a.small_best_large_rank} of {a.n_configs} at {ll}."
        )
    if a.regret is not None:
        if a.small_best == a.large_best:
            out.append(f"- Regret: 0, the best at {sl} is also the best at {ll}.")
        else:
            note = f"; {a.regret_note}" if a.regret_note else ""
            out.append(
                f"- Regret of picking it: {a.regret.text('+.4f')}: its {ll} {metric.name} minus "
                f"that of the {ll} best, {_code(a.large_best or '')}, paired by seed (positive "
                f"= worse; the {ll} best is picked on these same seeds, so this is if anything "
                f"overstated{note})."
            )
    out += [f"- {_md_escape(n)}" for n in a.notes]
    if a.dropped:
        out.append(
            "- Not compared: "
            + "; ".join(f"{_code(c)} ({why})" for c, why in a.dropped.items())
            + "."
        )
    return "\n".join(out) + "\n"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _code(key: str, *, in_table: bool = False) -> str:
    """A configuration key as inline code; in a table its '|' escaped (GFM keeps the escape out
    of the rendered code)."""
    text = key.replace("|", "\\|") if in_table else key
    fence = "``" if "`" in key else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"

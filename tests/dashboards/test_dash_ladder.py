"""Scale ladder: did the small study's ranking of the promoted configurations predict the large
study's? Rank statistics are scipy's, the regret is a seed-paired difference, and the bootstrap
interval covers what its docstring says it covers at about its nominal rate."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats

import dashboards as d
from dashboards._common import metric_info
from dashboards._ladder import (
    BOOTSTRAP_LEVEL,
    ScaleAgreement,
    _kendall_tau_b_rows,
    _short_key,
    _spearman_rows,
    plot_scale_agreement,
    scale_agreement,
    scale_agreement_markdown,
)
from dashboards._report import markdown_to_html

BPC = metric_info("bpc")


def ladder(
    mu_small: np.ndarray,
    mu_large: np.ndarray,
    rng: np.random.Generator,
    *,
    n_small: int = 5,
    n_large: int = 5,
    noise: float = 0.7,
    seed_effect: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-seed scores of K configurations at two scales: the configuration's true mean at that
    scale, plus the seed's effect (shared by every configuration at the scale: the same data
    order and initialisation), plus noise of the run itself."""

    def scale(mu: np.ndarray, n: int, first_seed: int) -> pd.DataFrame:
        k = len(mu)
        v = mu[:, None] + rng.normal(0, seed_effect, n)[None, :] + rng.normal(0, noise, (k, n))
        return pd.DataFrame(
            {
                "config": np.repeat([f"c{i}" for i in range(k)], n),
                "seed": np.tile(np.arange(first_seed, first_seed + n), k),
                "value": v.ravel(),
            }
        )

    return scale(mu_small, n_small, 0), scale(mu_large, n_large, 100)


def true_means(k: int = 8, *, perfect: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """True small-scale means spread with sd 1; large-scale means 0.8 times them plus a fixed
    configuration-specific departure (sd 0.6), or exactly 0.7 times them (``perfect``)."""
    mu_s = np.linspace(0.0, 1.0, k)
    mu_s = (mu_s - mu_s.mean()) / mu_s.std()
    if perfect:
        return mu_s, 0.7 * mu_s
    return mu_s, 0.8 * mu_s + np.random.default_rng(99).normal(0, 0.6, k)


def expected_tau(
    mu_s: np.ndarray,
    mu_l: np.ndarray,
    n_small: int,
    n_large: int,
    noise: float,
    rng: np.random.Generator,
    draws: int = 4000,
) -> float:
    """Kendall's tau between the configurations' means over ``n_small`` / ``n_large`` seeds,
    averaged over fresh seeds: what the interval is for. (The shared seed effect moves every
    configuration's mean alike at a scale and so leaves every rank as it is; it is left out.)"""
    k = len(mu_s)
    total = 0.0
    for _ in range(draws):
        ms = mu_s + rng.normal(0, noise, (n_small, k)).mean(axis=0)
        ml = mu_l + rng.normal(0, noise, (n_large, k)).mean(axis=0)
        total += stats.kendalltau(ms, ml).statistic
    return total / draws


def frame(rows: dict[str, list[float]], first_seed: int = 0) -> pd.DataFrame:
    """config -> per-seed values (seeds first_seed, first_seed + 1, ...; NaN = no value)."""
    return pd.DataFrame(
        [
            {"config": c, "seed": first_seed + i, "value": v}
            for c, vs in rows.items()
            for i, v in enumerate(vs)
        ]
    )


# --------------------------------------------------------------------------------------------
# What is computed


def test_tau_and_rho_are_scipys_on_the_configuration_means() -> None:
    rng = np.random.default_rng(0)
    small, large = ladder(*true_means(), rng)
    a = scale_agreement(small, large, n_boot=200)
    ms = small.groupby("config")["value"].mean()
    ml = large.groupby("config")["value"].mean().loc[ms.index]
    assert a.kendall_tau == stats.kendalltau(ms.to_numpy(), ml.to_numpy()).statistic
    assert a.spearman_rho == stats.spearmanr(ms.to_numpy(), ml.to_numpy()).statistic
    assert a.n_configs == 8 and (a.small_seeds, a.large_seeds) == (5, 5)
    assert a.resampling == "paired" and a.n_boot == 200
    assert a.interval_label == f"{BOOTSTRAP_LEVEL:.0%} percentile bootstrap over seeds"
    assert a.tau_interval is not None and a.rho_interval is not None
    assert -1.0 <= a.tau_interval[0] <= a.tau_interval[1] <= 1.0
    # Ordered by large-scale mean, best (lowest) first, with both scales' ranks.
    means = [c.large.mean for c in a.configs]
    assert means == sorted(means) and [c.large_rank for c in a.configs] == list(range(1, 9))
    small_rank = pd.Series(stats.rankdata(ms.to_numpy(), method="min"), index=ms.index)
    for c in a.configs:
        assert c.small.mean == pytest.approx(ms[c.config]) and c.small.n == 5
        assert c.small.kind is d.IntervalKind.STUDENT_T
        assert c.small_rank == small_rank[c.config]


def test_vectorised_rank_statistics_equal_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, (300, 7)).astype(float)  # many ties, some constant rows
    y = rng.integers(0, 4, (300, 7)).astype(float)
    x[0] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = [stats.kendalltau(a, b).statistic for a, b in zip(x, y, strict=True)]
        rho = [stats.spearmanr(a, b).statistic for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(_kendall_tau_b_rows(x, y), tau, equal_nan=True, atol=1e-12)
    np.testing.assert_allclose(_spearman_rows(x, y), rho, equal_nan=True, atol=1e-12)


def test_regret_is_the_large_scale_difference_paired_by_seed() -> None:
    small = frame({"a": [1.0, 1.1, 0.9], "b": [1.2, 1.3, 1.25], "c": [1.5, 1.4, 1.6],
                   "e": [1.7, 1.8, 1.75]})  # fmt: skip
    large = frame({"a": [0.62, 0.70, 0.58, 0.66], "b": [0.60, 0.65, 0.55, 0.61],
                   "c": [0.8, 0.9, 0.85, 0.8], "e": [0.9, 0.95, 1.0, 0.9]}, 10)  # fmt: skip
    a = scale_agreement(small, large, n_boot=100)
    assert (a.small_best, a.large_best, a.small_best_large_rank) == ("a", "b", 2)
    direct = np.array([0.62, 0.70, 0.58, 0.66]) - np.array([0.60, 0.65, 0.55, 0.61])
    assert a.regret is not None and a.regret.kind is d.IntervalKind.STUDENT_T
    assert a.regret.n == 4 and a.regret.values == pytest.approx(tuple(direct))
    assert a.regret.mean == pytest.approx(direct.mean())
    half = stats.t.ppf(0.975, 3) * direct.std(ddof=1) / 2
    assert (a.regret.low, a.regret.high) == pytest.approx(
        (direct.mean() - half, direct.mean() + half)
    )
    assert a.regret_note is None
    # Higher is better: the same data ranks the other way round and the regret keeps its sign
    # convention (positive = worse).
    up = scale_agreement(small, large, n_boot=100, direction="maximize")
    assert (up.small_best, up.large_best) == ("e", "e") and up.regret is not None
    assert up.regret.mean == 0.0 and "also the large scale's best" in (up.regret_note or "")
    assert up.configs[0].config == "e" and up.configs[0].large_rank == 1
    assert up.kendall_tau == a.kendall_tau


def test_regret_is_zero_with_a_note_when_the_small_best_is_the_large_best() -> None:
    rng = np.random.default_rng(2)
    small, large = ladder(*true_means(perfect=True), rng, noise=0.01)
    a = scale_agreement(small, large, n_boot=100)
    assert a.small_best == a.large_best == "c0" and a.small_best_large_rank == 1
    assert a.regret is not None and (a.regret.mean, a.regret.low, a.regret.high) == (0, 0, 0)
    assert a.regret_note == "the small scale's best is also the large scale's best: regret 0"
    assert a.kendall_tau == pytest.approx(1.0) and a.tau_interval == pytest.approx((1.0, 1.0))


def test_fewer_configurations_than_min_configs_give_no_rank_statistics() -> None:
    rng = np.random.default_rng(3)
    small, large = ladder(*true_means(3), rng)
    a = scale_agreement(small, large)
    assert a.kendall_tau is None and a.spearman_rho is None
    assert a.tau_interval is None and a.rho_interval is None
    assert a.rank_reason == (
        "rank statistics are not computed: 3 configurations at both scales; rank statistics "
        "need at least 4"
    )
    assert a.interval_reason is not None and a.interval_reason.startswith("no interval: 3 conf")
    # Everything else is still there.
    assert len(a.configs) == 3 and a.small_best is not None and a.regret is not None
    assert scale_agreement(small, large, min_configs=3).kendall_tau is not None


def test_configurations_at_one_scale_only_are_dropped_and_reported() -> None:
    small = frame({"a": [1.0, 1.1, 0.9], "b": [1.2, 1.3, 1.25], "c": [1.5, 1.4, 1.6],
                   "e": [1.7, 1.8, 1.75], "not-promoted": [2.0, 2.1, 2.2],
                   "failed": [1.9, 1.8, 1.7]})  # fmt: skip
    large = frame({"a": [0.62, 0.70, 0.58], "b": [0.60, 0.65, 0.55], "c": [0.8, 0.9, 0.85],
                   "e": [0.9, 0.95, 1.0], "failed": [math.nan, math.nan, math.nan],
                   "new": [0.5, 0.5, 0.5]}, 10)  # fmt: skip
    a = scale_agreement(small, large, n_boot=100)
    assert a.n_configs == 4 and {c.config for c in a.configs} == {"a", "b", "c", "e"}
    assert a.dropped == {
        "failed": "no finite value at the large scale",
        "new": "only at the large scale (no small-scale score)",
        "not-promoted": "only at the small scale (not promoted, or not run at the large scale)",
    }
    assert "3 large-scale runs were left out: no finite value." in a.notes
    md = scale_agreement_markdown(a, BPC, "small", "large")
    assert "Not compared: `failed` (no finite value at the large scale)" in md


def test_nan_seeds_make_the_bootstrap_resample_within_each_configuration() -> None:
    rng = np.random.default_rng(4)
    small, large = ladder(*true_means(), rng)
    large.loc[3, "value"] = math.nan  # c0 lost one of its 5 large-scale seeds
    a = scale_agreement(small, large, n_boot=200)
    assert a.resampling == "per-configuration" and not a.large_seeds_shared
    assert a.small_seeds_shared and a.tau_interval is not None
    assert a.interval_label.endswith(", resampled per configuration")
    assert any("resampled each configuration's seeds on their own" in n for n in a.notes)
    c0 = next(c for c in a.configs if c.config == "c0")
    assert c0.large.n == 4


def test_one_or_two_seeds_give_no_interval_and_say_why() -> None:
    rng = np.random.default_rng(5)
    mu = true_means()
    a = scale_agreement(*ladder(*mu, rng, n_small=1), n_boot=100)
    assert a.kendall_tau is not None and a.tau_interval is None and a.rho_interval is None
    assert a.interval_reason == (
        "no interval: 1 seed at the small scale; no seed noise can be estimated from 1 seed"
    )
    assert a.configs[0].small.kind is d.IntervalKind.SINGLE
    b = scale_agreement(*ladder(*mu, rng, n_large=2), n_boot=100)
    assert b.tau_interval is None and b.interval_reason is not None
    assert b.interval_reason.startswith("no interval: 2 seeds at the large scale")
    assert b.regret is not None and b.regret.kind is d.IntervalKind.TWO_VALUES


def test_tied_means_share_a_rank_and_tau_b_counts_the_tie() -> None:
    small = frame({"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0], "c": [2.0, 2.1, 1.9],
                   "e": [3.0, 3.1, 2.9]})  # fmt: skip
    large = frame({"a": [0.5, 0.6, 0.4], "b": [0.7, 0.6, 0.8], "c": [0.6, 0.65, 0.55],
                   "e": [0.9, 1.0, 0.95]}, 10)  # fmt: skip
    a = scale_agreement(small, large, n_boot=100)
    ranks = {c.config: c.small_rank for c in a.configs}
    assert ranks == {"a": 1, "b": 1, "c": 3, "e": 4}
    assert a.small_best == "a" and any("tie for the best small-scale mean" in n for n in a.notes)
    ms, ml = [1.0, 1.0, 2.0, 3.0], [0.5, 0.7, 0.6, 0.95]
    assert a.kendall_tau == pytest.approx(stats.kendalltau(ms, ml).statistic)


def test_paired_bootstrap_removes_the_shared_seed_effect() -> None:
    """A seed effect 100x the runs' own noise moves every configuration alike at a scale: the
    ranks never change, and the paired bootstrap (one seed set per scale) knows it."""
    rng = np.random.default_rng(6)
    small, large = ladder(*true_means(perfect=True), rng, noise=0.01, seed_effect=1.0)
    a = scale_agreement(small, large, n_boot=300)
    assert a.tau_interval == (1.0, 1.0) and a.rho_interval == (1.0, 1.0)
    # Resampled per configuration, the seed effect counts as noise and the interval is wide.
    large.loc[0, "value"] = math.nan
    b = scale_agreement(small, large, n_boot=300)
    assert b.tau_interval is not None and b.tau_interval[0] < 0.7


# --------------------------------------------------------------------------------------------
# Coverage


def test_interval_covers_the_expected_tau_at_the_seeds_run_at_its_nominal_rate() -> None:
    """200 synthetic ladders: 8 configurations, 5 seeds per scale, each run's own noise 0.7 of
    the spread (sd) of the true means, a shared seed effect 1.0. The target is the tau between
    the configurations' means over 5 and 5 seeds, averaged over fresh seeds (see the docstring
    of scale_agreement).

    Band: nominal 90%; the binomial sd at 200 ladders is 0.021; a percentile bootstrap over
    5 seeds missed its nominal rate by -0.05 to +0.06 over the regimes measured (noise from 0.15
    to 1.5 of the spread, 8-16 configurations) - so 0.80 (0.90 - 0.05 - 2.4 sd) to 0.985 (0.96
    + 1.2 sd; an interval that always covers would fail it), and the interval must be narrow
    enough to say something."""
    mu_s, mu_l = true_means()
    rng = np.random.default_rng(11)
    target = expected_tau(mu_s, mu_l, 5, 5, 0.7, rng)
    tau_inf = stats.kendalltau(mu_s, mu_l).statistic
    assert target < tau_inf - 0.05  # the seeds' noise pulls tau toward 0
    covered, widths = 0, []
    for i in range(200):
        a = scale_agreement(*ladder(mu_s, mu_l, rng), n_boot=400, seed=i)
        assert a.tau_interval is not None
        lo, hi = a.tau_interval
        covered += lo - 1e-9 <= target <= hi + 1e-9
        widths.append(hi - lo)
    rate = covered / 200
    assert 0.80 <= rate <= 0.985, rate
    assert np.median(widths) < 0.5


def test_interval_is_not_for_the_noise_free_tau() -> None:
    """The true means agree perfectly (tau 1) but seed noise as large as their spread pulls the
    means' tau far below 1: the interval is for the latter and (almost) never reaches 1."""
    mu_s, mu_l = true_means(perfect=True)
    rng = np.random.default_rng(12)
    target = expected_tau(mu_s, mu_l, 5, 5, 1.5, rng, draws=1000)
    reach_one = covered = 0
    for i in range(40):
        a = scale_agreement(*ladder(mu_s, mu_l, rng, noise=1.5), n_boot=300, seed=i)
        assert a.tau_interval is not None
        reach_one += a.tau_interval[1] >= 1.0
        covered += a.tau_interval[0] <= target <= a.tau_interval[1]
    assert reach_one <= 2 and covered >= 30


# --------------------------------------------------------------------------------------------
# Rendering


def _agreement(n_small: int = 3, n_large: int = 5) -> ScaleAgreement:
    rng = np.random.default_rng(21)
    mu_s, mu_l = true_means()
    small, large = ladder(1.3 + 0.05 * mu_s, 1.1 + 0.04 * mu_l, rng, n_small=n_small,
                          n_large=n_large, noise=0.02, seed_effect=0.03)  # fmt: skip
    small["config"] = "zc=" + small["config"] + "|zh=0.05|lstm"
    large["config"] = "zc=" + large["config"] + "|zh=0.05|lstm"
    return scale_agreement(small, large, n_boot=300)


def test_figure_states_n_and_tau_names_its_bars_and_marks_the_small_best() -> None:
    a = _agreement()
    fig = plot_scale_agreement(a, BPC, small_label="3 epochs", large_label="20 epochs")
    points, best = fig.data
    assert list(points.x) == [c.small.mean for c in a.configs]
    assert list(points.y) == [c.large.mean for c in a.configs]
    labels = fig.layout.annotations  # one per point, a leader line to it
    assert [n.text for n in labels] == [c.config for c in a.configs]  # short keys shown whole
    assert [(n.x, n.y) for n in labels] == list(zip(points.x, points.y, strict=True))
    assert all(n.showarrow for n in labels)
    assert all(c.config in h for c, h in zip(a.configs, points.hovertext, strict=True))
    assert "x 95% Student-t over 3 seeds, y 95% Student-t over 5 seeds" in points.name
    assert points.error_x.array is not None and points.error_y.array is not None
    assert best.marker.symbol == "star" and a.small_best is not None
    assert f"rank {a.small_best_large_rank} of 8 at 20 epochs" in best.name
    sub = fig.layout.title.subtitle.text
    assert "8 configurations at both scales (3 seeds at 3 epochs, 5 seeds at 20 epochs)" in sub
    assert f"Kendall τ-b = {a.kendall_tau:.3f} [" in sub
    assert "90% percentile bootstrap over seeds" in sub
    assert fig.layout.xaxis.title.text == "validation BPC (bits per character) at 3 epochs"
    assert fig.layout.yaxis.title.text == "validation BPC (bits per character) at 20 epochs"


def test_point_labels_shorten_parameter_names() -> None:
    key = "zoneout_cell=0.25, zoneout_hidden=0.05, learning_rate=0.002"
    assert _short_key(key) == "z_c=0.25, z_h=0.05, lr=0.002"
    assert _short_key("0.1|0.2|lstm") == "0.1|0.2|lstm"
    long = _short_key("zoneout_cell=0.25, zoneout_hidden=0.05, learning_rate=0.002, cell=lstm")
    assert len(long) == 30 and long.endswith("…")


def test_figure_with_two_seeds_names_the_range_and_says_why_no_interval() -> None:
    a = _agreement(n_small=2)
    fig = plot_scale_agreement(a, BPC, small_label="small", large_label="large")
    assert "x range of the 2 seeds" in fig.data[0].name
    sub = fig.layout.title.subtitle.text.replace("<br>", " ")
    assert "no interval: 2 seeds at the small scale" in sub


def test_figure_without_configurations_says_so() -> None:
    empty = frame({"a": [1.0, 1.1, 1.2]})
    a = scale_agreement(empty, frame({"b": [1.0, 1.1, 1.2]}))
    assert a.n_configs == 0 and a.regret is None and a.small_best is None
    fig = plot_scale_agreement(a, BPC, small_label="small", large_label="large")
    assert isinstance(fig, go.Figure) and not fig.data
    assert "no configuration has a finite value at both scales" in fig.layout.annotations[0].text
    md = scale_agreement_markdown(a, BPC, "small", "large")
    assert "`a` (only at the small scale" in md and "`b` (only at the large scale" in md


def test_markdown_lists_configurations_statistics_and_regret() -> None:
    a = _agreement()
    md = scale_agreement_markdown(a, BPC, "3 epochs", "20 epochs")
    assert "## Scale agreement: 3 epochs → 20 epochs" in md
    assert "| configuration | 3 epochs bpc | 3 epochs rank | 20 epochs bpc | 20 epochs rank |" in md
    rows = [line for line in md.splitlines() if line.startswith("| `zc=")]
    assert len(rows) == 8 and all(r.count(" | ") == 4 for r in rows)  # '|' of keys escaped
    assert "`zc=c0\\|zh=0.05\\|lstm`" in md
    assert f"Kendall's τ-b between the two scales' means: {a.kendall_tau:.3f} [" in md
    assert "(90% percentile bootstrap over seeds)" in md and "in expectation over" in md
    assert f"ranks {a.small_best_large_rank} of 8 at 20 epochs" in md
    assert a.regret is not None
    if a.small_best != a.large_best:
        assert f"Regret of picking it: {a.regret.text('+.4f')}" in md
        assert "(95% Student-t, n = 5)" in md
    rendered = markdown_to_html(md)
    assert "<table>" in rendered and "zc=c0|zh=0.05|lstm" in rendered

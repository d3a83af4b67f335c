"""Intervals over seeds and seed-paired differences: they mean what they say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import dashboards as d


def test_student_t_interval_for_three_or_more_seeds() -> None:
    v = np.array([1.0, 1.2, 0.9, 1.1])
    iv = d.seed_interval(v)
    half = stats.t.ppf(0.975, 3) * v.std(ddof=1) / 2
    assert iv.kind is d.IntervalKind.STUDENT_T
    assert iv.mean == pytest.approx(1.05)
    assert (iv.low, iv.high) == pytest.approx((1.05 - half, 1.05 + half))
    assert iv.label == "95% Student-t over 4 seeds"


def test_two_seeds_keep_both_values_and_claim_no_95() -> None:
    iv = d.seed_interval([2.0, 2.2])
    assert iv.kind is d.IntervalKind.TWO_VALUES
    assert (iv.low, iv.high, iv.n) == (2.0, 2.2, 2)
    assert iv.values == (2.0, 2.2)
    assert iv.label == "n = 2" and "95%" not in iv.text()
    assert "2.0000, 2.2000" in iv.text()


def test_one_seed_and_none() -> None:
    assert d.seed_interval([3.0]).kind is d.IntervalKind.SINGLE
    assert d.seed_interval([np.nan]).kind is d.IntervalKind.EMPTY


def test_paired_difference_pairs_on_the_seed() -> None:
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([0.5, 1.5, 2.4, 9.0], index=[0, 1, 2, 3])  # seed 3 has no partner
    iv = d.paired_difference(a, b)
    assert iv.n == 3 and iv.values == pytest.approx((0.5, 0.5, 0.6))


def test_paired_interval_covers_the_true_difference_at_its_nominal_rate() -> None:
    """Over repeated synthetic studies (a seed effect shared by both configurations, 5 seeds),
    the 95% paired interval covers the true difference about 95% of the time, while the
    seed effect (10x the noise) would make unpaired intervals far wider."""
    rng = np.random.default_rng(7)
    true_diff, draws, covered, widths = 0.03, 600, 0, []
    for _ in range(draws):
        seed_effect = rng.normal(0, 0.1, 5)
        base = pd.Series(2.0 + seed_effect + rng.normal(0, 0.01, 5))
        other = pd.Series(2.0 + true_diff + seed_effect + rng.normal(0, 0.01, 5))
        iv = d.paired_difference(other, base)
        covered += iv.low <= true_diff <= iv.high
        widths.append(iv.high - iv.low)
    rate = covered / draws
    # Binomial sd at 600 draws is 0.009: 0.92-0.98 is a 3-sd band around 0.95.
    assert 0.92 <= rate <= 0.98, rate
    assert np.median(widths) < 0.05  # far narrower than the 0.1 seed effect


def test_grouped_intervals_equal_seed_interval_per_group() -> None:
    """The vectorized per-configuration intervals are seed_interval's, group by group."""
    from dashboards._configs import _grouped_intervals

    rng = np.random.default_rng(3)
    keys, seeds, values = [], [], []
    for k, n in enumerate([1, 2, 3, 5, 8]):
        keys += [f"c{k}"] * n
        seeds += list(range(n))
        values += list(rng.normal(2, 0.1, n))
    per_seed = pd.Series(values, index=pd.MultiIndex.from_arrays([keys, seeds]))
    got = _grouped_intervals(per_seed)
    for key, grp in per_seed.groupby(level=0):
        want = d.seed_interval(grp.to_numpy())
        iv = got.loc[key, "interval"]
        assert iv.kind is want.kind and iv.n == want.n and iv.values == want.values
        assert (iv.mean, iv.low, iv.high) == pytest.approx((want.mean, want.low, want.high))

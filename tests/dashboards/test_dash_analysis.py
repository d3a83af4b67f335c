"""Numbers from the pure analysis functions on responses with a known optimum."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import dashboards as d

Frames = tuple[pd.DataFrame, pd.DataFrame]
MakeFrames = Callable[..., Frames]


def _expected_zh_term(t: pd.DataFrame) -> float:
    """E[0.3 (z_h - 0.1)^2] over the sampled z_h: the offset of the z_c marginal."""
    return float(np.mean(0.3 * (t["param_zoneout_hidden"] - 0.1) ** 2))


def test_marginal_gp_recovers_minimum_and_band_covers_truth(
    frames: Frames, base_loss: float
) -> None:
    trials, _ = frames
    m = d.marginal_effect(trials, "zoneout_cell")
    assert m.method == "gp"
    assert not m.log_scale
    assert abs(m.best_x - 0.5) < 0.07
    truth = base_loss + (m.grid - 0.5) ** 2 + _expected_zh_term(trials)
    covered = (m.lower <= truth) & (truth <= m.upper)
    assert covered.mean() >= 0.8, covered.mean()
    # the grid stays inside the observed range and the band is a real band
    assert m.grid.min() >= trials["param_zoneout_cell"].min()
    assert m.grid.max() <= trials["param_zoneout_cell"].max()
    assert np.all(m.upper > m.lower)
    lo, hi = m.within_se  # type: ignore[misc]
    assert lo <= m.best_x <= hi


def test_marginal_of_hidden_rate_and_log_scale_learning_rate(frames: Frames) -> None:
    trials, _ = frames
    mh = d.marginal_effect(trials, "zoneout_hidden")
    assert abs(mh.best_x - 0.1) < 0.12
    lr = d.marginal_effect(trials, "learning_rate")
    assert lr.log_scale
    ratios = lr.grid[1:] / lr.grid[:-1]  # geometric grid
    assert np.allclose(ratios, ratios[0])


def test_few_points_use_lowess_and_fewer_use_points_only(make_frames: MakeFrames) -> None:
    trials, _ = make_frames(6, noise=0.001, seed=3)
    m = d.marginal_effect(trials, "zoneout_cell")
    assert m.method == "lowess"
    assert d.SMOOTH_MIN_POINTS <= 6 < d.GP_MIN_POINTS
    assert np.all(np.isfinite(m.mean)) and np.all(m.upper >= m.lower)
    few = d.marginal_effect(trials.head(2), "zoneout_cell")
    assert few.method == "none" and few.grid.size == 0 and few.within_se is None


def test_binned_gp_for_many_trials(make_frames: MakeFrames, base_loss: float) -> None:
    trials, _ = make_frames(d.MAX_EXACT_POINTS + 400, noise=0.02, seed=4, max_epochs=2)
    m = d.marginal_effect(trials, "zoneout_cell")
    assert m.method == "binned-gp"
    assert m.n_fit <= d.BINS_1D
    assert abs(m.best_x - 0.5) < 0.06
    truth = base_loss + (m.grid - 0.5) ** 2 + _expected_zh_term(trials)
    assert ((m.lower <= truth) & (truth <= m.upper)).mean() >= 0.8


def test_surface_best_near_truth_and_within_se_mask(frames: Frames) -> None:
    trials, _ = frames
    s = d.response_surface(trials, "zoneout_cell", "zoneout_hidden", grid_size=40)
    assert s.available and s.method == "gp"
    assert s.mean.shape == s.std.shape == s.within_se.shape == (40, 40)
    assert abs(s.best_x - 0.5) < 0.08
    assert abs(s.best_y - 0.1) < 0.15
    # grid limited to the observed bounding box, uncertainty reported everywhere
    assert s.x_grid.min() == trials["param_zoneout_cell"].min()
    assert s.y_grid.max() == trials["param_zoneout_hidden"].max()
    assert np.all(s.std > 0)
    expected = s.mean <= s.best_mean + s.best_se
    assert np.array_equal(s.within_se, expected)
    r, c = np.unravel_index(np.argmin(s.mean), s.mean.shape)
    assert s.within_se[r, c] and 0 < s.within_se.mean() < 1
    assert int(trials.loc[trials["best_value"].idxmin(), "number"]) == s.best_trial
    (x0, x1), (y0, y1) = s.within_se_ranges()  # type: ignore[misc]
    assert x0 <= 0.5 <= x1 and y0 <= s.best_y <= y1


def test_surface_not_fitted_on_too_few_points(make_frames: MakeFrames) -> None:
    trials, _ = make_frames(5, seed=5)
    s = d.response_surface(trials)
    assert not s.available and s.within_se_ranges() is None
    assert len(s.x) == 5  # the observed points are still there


def test_bootstrap_interval_contains_mean_and_shrinks_with_more_seeds() -> None:
    widths = []
    for n in (4, 16, 64):
        # evenly spread normal quantiles: the same spread for every n, so only n changes
        vals = 1.4 + 0.05 * norm.ppf((np.arange(n) + 0.5) / n)
        mean, lo, hi = d.bootstrap_ci(vals, rng=1)
        assert lo <= mean <= hi
        assert mean == pytest.approx(vals.mean())
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.35)  # ~ 1 / sqrt(n)
    assert d.bootstrap_ci([1.0]) == (1.0, 1.0, 1.0)
    # seeded: same numbers twice
    assert d.bootstrap_ci([1.0, 2.0, 4.0], rng=7) == d.bootstrap_ci([1.0, 2.0, 4.0], rng=7)


def test_seed_spread_groups_repeats(study_frames: Frames) -> None:
    trials, _ = study_frames
    sp = d.seed_spread(trials)
    assert sp.has_repeats
    assert (sp.configs["n_seeds"] == 2).all()
    assert (sp.configs["ci_low"] <= sp.configs["mean"]).all()
    assert (sp.configs["mean"] <= sp.configs["ci_high"]).all()
    assert sp.configs["mean"].is_monotonic_increasing  # best first for 'minimize'
    m = d.marginal_effect(trials, "zoneout_cell", spread=sp)
    assert len(m.spread) == len(sp.configs)


def test_asha_rungs_and_stop_rung() -> None:
    assert d.asha_rungs(100, 1, 4) == [1, 4, 16, 64]
    assert d.asha_rungs(64, 1, 4) == [1, 4, 16]  # the full budget is not a rung
    assert d.asha_rungs(20, 2, 3) == [2, 6, 18]
    assert d.asha_rungs(9, 1, 3) == [1, 3]
    assert d.asha_rungs(20, None, None) == []
    with pytest.raises(ValueError):
        d.asha_rungs(20, 1, 1)
    assert d.stop_rung(5, [1, 4, 16]) == 4
    assert d.stop_rung(0, [1, 4, 16]) is None


def test_learning_curves_budget_switch_and_stopping(study_frames: Frames) -> None:
    trials, epochs = study_frames
    last = d.learning_curves(trials, epochs, max_epochs=9, grace_period=1, reduction_factor=3)
    full = d.learning_curves(
        trials, epochs, max_epochs=9, budget="full", grace_period=1, reduction_factor=3
    )
    assert last.rungs == [1, 3]
    assert last.color_param == "zoneout_cell"
    pruned = trials[trials["state"] == "PRUNED"]
    assert last.n_stopped_early == len(pruned)
    stopped = last.final[last.final["stopped_early"]]
    by_num = trials.set_index("number")["epochs"]
    assert list(stopped["rung"].astype(int)) == [int(by_num[n]) for n in stopped["number"]]
    assert set(stopped["rung"].astype(int)) <= {1, 3}
    # RUNNING trial drawn but not counted as stopped; FAIL trial without epochs absent
    running = trials.loc[trials["state"] == "RUNNING", "number"].item()
    assert not last.final.loc[last.final["number"] == running, "stopped_early"].item()
    assert (full.final["epoch"] == 9).all()
    assert full.n_stopped_early == 0
    assert len(full.final) == (trials["epochs"] >= 9).sum()
    assert set(full.curves["number"]) == set(full.final["number"])
    # colour is the trial's rate
    row = last.curves.iloc[0]
    rate = trials.set_index("number").loc[row["number"], "param_zoneout_cell"]
    assert row["color"] == pytest.approx(rate)
    with pytest.raises(ValueError):
        d.learning_curves(trials, epochs, max_epochs=9, budget="half")  # type: ignore[arg-type]


def test_complete_trial_short_of_budget_counts_as_stopped(make_frames: MakeFrames) -> None:
    trials, epochs = make_frames(4, seed=6, max_epochs=5)
    trials.loc[0, "epochs"] = 3
    epochs = epochs[~((epochs["number"] == 0) & (epochs["epoch"] > 3))]
    c = d.learning_curves(trials, epochs, max_epochs=5, grace_period=1, reduction_factor=3)
    assert c.final.set_index("number").loc[0, "stopped_early"]
    assert c.final.set_index("number").loc[0, "rung"] == 3


@pytest.mark.parametrize("evaluator", ["ped-anova", "fanova"])
def test_importance_ranks_cell_rate_above_irrelevant(frames: Frames, evaluator: str) -> None:
    trials, _ = frames
    imp = d.parameter_importance(trials, evaluator=evaluator)  # type: ignore[arg-type]
    assert imp.most_important == "zoneout_cell"
    assert imp.importances["zoneout_cell"] > imp.importances["irrelevant"]
    assert sum(imp.importances.values()) == pytest.approx(1.0)


def test_optuna_study_from_frame_infers_distributions(study_frames: Frames) -> None:
    trials, epochs = study_frames
    study = d.build_optuna_study(trials, epochs=epochs)
    dists = study.trials[0].distributions
    assert dists["learning_rate"].log  # type: ignore[attr-defined]
    assert not dists["zoneout_cell"].log  # type: ignore[attr-defined]
    assert type(dists["cell"]).__name__ == "CategoricalDistribution"
    states = [t.state.name for t in study.trials]
    assert states.count("PRUNED") == (trials["state"] == "PRUNED").sum()
    assert states.count("FAIL") == 1 and states.count("RUNNING") == 1
    assert study.trials[0].intermediate_values[1] == pytest.approx(
        epochs[(epochs["number"] == 0) & (epochs["epoch"] == 1)]["valid_metric"].iloc[0]
    )
    assert study.best_value == pytest.approx(trials["best_value"].min())
    imp = d.parameter_importance(study)
    assert imp.importances


def test_summary_names_best_config_ranges_and_top_parameter(study_frames: Frames) -> None:
    trials, epochs = study_frames
    a = d.analyze(
        trials, epochs, metric="bpc", max_epochs=9, grace_period=1, reduction_factor=3,
        study_name="ptb-char <b>",
    )  # fmt: skip
    md = a.summary_markdown
    best = int(trials.loc[trials["best_value"].idxmin(), "number"])
    assert f"Best trial: #{best}" in md
    assert "bits per character" in md
    assert "Within one SE of the best: zoneout_cell in [" in md
    assert "Most important parameter" in md and "**zoneout_cell**" in md
    assert "ASHA rungs [1, 3]" in md
    assert "\\<b\\>" in md  # study name escaped


def test_empty_and_degenerate_frames(make_frames: MakeFrames) -> None:
    trials, epochs = make_frames(3, seed=7)
    trials["state"] = "FAIL"
    trials["best_value"] = np.nan
    a = d.analyze(trials, epochs, metric="perplexity", max_epochs=9)
    assert "No completed trial" in a.summary_markdown
    assert not a.importance.importances and a.importance.reason
    assert a.metric.log_axis and a.metric.unit == "perplexity"

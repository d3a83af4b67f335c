"""The analysis on synthetic studies with a known truth (see conftest.true_loss)."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution

import dashboards as d
from dashboards._importance import IMPORTANCE_MIN_COMPLETE, parameter_importance
from dashboards._runs import pick_epoch, study_runs

from .conftest import true_loss


def test_grid_3x2_two_seeds_gives_a_lattice_of_six_cells(make_grid) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid()
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=4)
    assert a.surface is not None and a.surface.lattice is not None
    lat = a.surface.lattice
    assert lat.n_cells == 6 and (lat.n == 2).all()
    assert list(lat.x_values) == [0.0, 0.25, 0.5] and list(lat.y_values) == [0.0, 0.05]
    # 6 configurations < the GP's minimum: no surface and no curve, and the reason says so.
    assert a.surface.gp is None and "needs 8" in a.surface.gp_reason
    assert all(m.curve is None for m in a.marginals.values())
    assert a.table.epoch.full_budget


def test_paired_differences_against_the_unregularized_point(make_grid) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid(n_seeds=4, seed_sd=0.2, noise=0.002)
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=4)
    t = a.table
    assert t.baseline is not None and "unregularized" in t.baseline_reason
    base_truth = float(true_loss(np.array(0.0), np.array(0.0)))
    for _, row in t.configs.iterrows():
        if row["config"] == t.baseline:
            continue
        truth = (
            float(
                true_loss(
                    np.array(row["param_zoneout_cell"]), np.array(row["param_zoneout_hidden"])
                )
            )
            - base_truth
        )
        assert row["diff_kind"] == "student-t"
        assert row["diff_low"] - 0.01 <= truth <= row["diff_high"] + 0.01
        # The seed effect (0.2) is removed by pairing: the paired interval is narrow.
        assert row["diff_high"] - row["diff_low"] < 0.05 < row["high"] - row["low"]


def test_named_baseline_and_missing_baseline(make_grid) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid(zc_values=(0.25, 0.5))
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=4)
    assert a.table.baseline is None and "no unregularized" in a.table.baseline_reason
    b = d.analyze(trials, epochs, metric="bpc", max_epochs=4, baseline_trial=1)
    assert b.table.baseline is not None and "trial 1" in b.table.baseline_reason


def test_four_trials_give_points_and_no_curve(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(4, seed=3)
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=9)
    assert a.surface is not None and a.surface.lattice is None and a.surface.gp is None
    assert len(a.surface.points) == 4
    for m in a.marginals.values():
        assert m.curve is None and "distinct configurations" in m.curve_reason
        assert len(m.configs) == 4


def test_curve_is_sorted_and_inside_the_observed_range(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(40, noise=0.005, seed=4)
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=9)
    for name, m in a.marginals.items():
        assert m.curve is not None, (name, m.curve_reason)
        x = trials[f"param_{name}"].astype(float)
        g = m.curve.grid
        assert np.all(np.diff(g) > 0)
        assert g.min() >= x.min() - 1e-12 and g.max() <= x.max() + 1e-12
        assert np.all(m.curve.low <= m.curve.mean) and np.all(m.curve.mean <= m.curve.high)
        assert np.all(m.curve.high - m.curve.low > 0)  # a band that is drawn
    s = a.surface
    assert s is not None and s.gp is not None
    assert s.gp.x_grid.min() >= trials["param_zoneout_cell"].min() - 1e-12
    assert s.gp.y_grid.max() <= trials["param_zoneout_hidden"].max() + 1e-12
    # The truth is best at z_c = 0.5, z_h = 0.1: the partial dependence finds it.
    zc = a.marginals["zoneout_cell"].curve
    assert zc is not None and abs(zc.best_x - 0.5) < 0.15


def test_partial_dependence_averages_over_a_confounder() -> None:
    """z_c is sampled high exactly when the learning rate is bad: a 1-D smoother through the
    scatter would show z_c hurting; the GP's partial dependence over both shows it does not."""
    rng = np.random.default_rng(5)
    n = 60
    zc = rng.uniform(0, 0.5, n)
    lr_bad = (zc > 0.25) ^ (rng.uniform(size=n) < 0.15)
    lr = np.where(lr_bad, 0.03, 0.003) * rng.uniform(0.9, 1.1, n)
    y = 2.0 + 0.5 * (np.log10(lr) + 2.5) ** 2 + rng.normal(0, 0.003, n)
    trials = pd.DataFrame(
        {
            "number": range(n),
            "state": "COMPLETE",
            "param_zoneout_cell": zc,
            "param_learning_rate": lr,
            "best_value": y,
        }
    )
    a = d.analyze(trials, pd.DataFrame(), metric="bpc", max_epochs=1)
    curve = a.marginals["zoneout_cell"].curve
    assert curve is not None and curve.averaged_over == ["learning_rate"]
    naive = np.polyfit(zc, y, 1)[0] * 0.5  # the scatter's slope over the range: confounded
    assert naive > 0.1
    assert abs(curve.mean[-1] - curve.mean[0]) < naive / 3


def test_epoch_k_view_for_a_study_stopped_early(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(16, prune_frac=0.75, rungs=(1, 3), seed=6)
    runs = study_runs(trials, epochs, max_epochs=9)
    assert pick_epoch(runs, 8).epoch in (1, 3)
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=9, grace_period=1, reduction_factor=3)
    m = a.marginals["zoneout_cell"]
    assert not m.table.epoch.full_budget and m.table.epoch.n_configs >= 8
    assert f"at epoch {m.table.epoch.epoch} of 9" in a.summary_markdown
    # Every run that reached k counts, with its best value up to k.
    at = runs.at(m.table.epoch.epoch)
    assert len(at) == (runs.runs["reached"] >= m.table.epoch.epoch).sum()


def _real_study(n: int) -> optuna.Study:
    rng = np.random.default_rng(8)
    dists = {
        "zoneout_cell": FloatDistribution(0.0, 1.0),
        "zoneout_hidden": FloatDistribution(0.0, 0.5),
    }
    study = optuna.create_study(direction="minimize")
    for _ in range(n):
        p = {"zoneout_cell": float(rng.uniform(0, 1)), "zoneout_hidden": float(rng.uniform(0, 0.5))}
        v = float(true_loss(np.array(p["zoneout_cell"]), np.array(p["zoneout_hidden"])))
        study.add_trial(optuna.trial.create_trial(params=p, distributions=dists, value=v))
    return study


def test_importance_refuses_below_its_minimum_with_a_reason() -> None:
    imp = parameter_importance(_real_study(IMPORTANCE_MIN_COMPLETE - 1))
    assert not imp.importances
    assert imp.reason == (
        f"needs at least {IMPORTANCE_MIN_COMPLETE} complete trials, the study has "
        f"{IMPORTANCE_MIN_COMPLETE - 1}"
    )
    assert "no Optuna study" in (parameter_importance(None).reason or "")


def test_importance_is_optuna_dashboards_ped_anova_on_the_real_study() -> None:
    study = _real_study(40)
    imp = parameter_importance(study)
    expected = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )
    assert imp.importances == pytest.approx(dict(expected))
    assert imp.most_important == "zoneout_cell"

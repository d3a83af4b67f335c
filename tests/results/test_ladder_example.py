"""The numbers of docs/results/ptb-char/ladder/README.md, recomputed from its ladder.db (a copy):
the promotion, how the runs ended, the two scales' scores, the rank statistics and their
bootstrap interval, and the seed-paired difference it quotes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dashboards import MetricInfo, ScaleFrames, promotion_section
from study import keys
from study import optuna_study as ostudy
from study.report import load_study_frames
from study.store import Store
from tests.support import assert_one_score

HERE = Path(__file__).resolve().parents[2] / "docs" / "results" / "ptb-char" / "ladder"
README = (HERE / "README.md").read_text(encoding="utf-8")
SMALL, LARGE = "quickstart", "quickstart-promoted"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    copy = tmp_path_factory.mktemp("ladder") / "ladder.db"
    shutil.copy(HERE / "ladder.db", copy)
    return f"sqlite:///{copy}"


def _per_seed_best(url: str, name: str) -> dict[tuple[float, float], list[float]]:
    with Store(url) as store:
        epochs = store.epochs_frame(name)
        trials = store.trials_frame(name).set_index("number")
    best = epochs.groupby(["number", "seed"])["valid_metric"].min()
    out: dict[tuple[float, float], list[float]] = {}
    for (number, _seed), value in best.items():
        row = trials.loc[number]
        key = (float(row["param_zoneout_cell"]), float(row["param_zoneout_hidden"]))
        out.setdefault(key, []).append(float(value))
    return out


def test_the_promotion_and_how_the_runs_ended(url: str) -> None:
    study = ostudy.load_study(url, LARGE)
    promoted = ostudy.study_attrs(study)[keys.PROMOTED_FROM]
    assert promoted["study"] == SMALL and promoted["top"] == 4
    assert [p["why"] for p in promoted["points"]] == ["top 1", "top 2", "top 3", "top 4"]
    assert promoted["points"][0]["params"] == {"zoneout_cell": 0.0, "zoneout_hidden": 0.0}
    for name in (SMALL, LARGE):
        assert_one_score(url, name)
    with Store(url) as store:
        runs = store.runs_frame(LARGE)
        epochs = store.epochs_frame(LARGE)
    assert len(runs) == 12 and set(runs["ended"]) == {"budget"}
    assert set(runs["epochs"]) == {12} and set(runs["best_epoch"]) == {12}
    assert "the 12 promoted runs trained all 12 epochs" in " ".join(README.split())
    assert len(epochs) == 144


def test_the_scores_ranks_and_interval_the_readme_quotes(url: str) -> None:
    small, large = _per_seed_best(url, SMALL), _per_seed_best(url, LARGE)
    order = [(0.0, 0.0), (0.25, 0.0), (0.0, 0.1), (0.0, 0.2)]
    assert set(large) == set(order)
    x = [float(np.mean(small[c])) for c in order]
    y = [float(np.mean(large[c])) for c in order]
    assert list(np.argsort(x)) == list(np.argsort(y)) == [0, 1, 2, 3]
    assert f"{x[0]:.4f} BPC at 4 epochs, {y[0]:.4f} at 12" in README
    tau, rho = stats.kendalltau(x, y).statistic, stats.spearmanr(x, y).statistic
    assert tau == pytest.approx(1.0) and rho == pytest.approx(1.0)
    frames = {name: load_study_frames(url, name) for name in (SMALL, LARGE)}
    scales = {
        n: ScaleFrames(n, f.trials, f.epochs, f.runs, f.max_epochs) for n, f in frames.items()
    }
    _, _, agreement = promotion_section(
        scales[SMALL], scales[LARGE], params=["zoneout_cell", "zoneout_hidden"],
        metric=MetricInfo.of("bpc"),
    )  # fmt: skip
    assert agreement.kendall_tau == pytest.approx(tau)
    assert agreement.tau_interval == pytest.approx((1.0, 1.0))
    assert agreement.rho_interval == pytest.approx((1.0, 1.0))
    assert "[1.000, 1.000]" in README
    # The seed-paired difference of (0.25, 0) to (0, 0) at 12 epochs.
    with Store(url) as store:
        epochs = store.epochs_frame(LARGE)
        trials = store.trials_frame(LARGE).set_index("number")
    best = epochs.groupby(["number", "seed"])["valid_metric"].min().unstack()
    number = {
        (float(r["param_zoneout_cell"]), float(r["param_zoneout_hidden"])): n
        for n, r in trials.iterrows()
    }
    diff = best.loc[number[(0.25, 0.0)]] - best.loc[number[(0.0, 0.0)]]
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    quoted = f"+{diff.mean():.4f} [+{diff.mean() - half:.4f}, +{diff.mean() + half:.4f}]"
    assert quoted in README

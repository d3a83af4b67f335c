"""One score per trial everywhere (study.score): Optuna's value and intermediate values,
``zs_trials.best_value``, ``zs_runs``, ``status``, ``export`` and the report all read the mean over
seeds of each seed's best validation value, for complete, ASHA-pruned, converged and resumed
trials, on SQLite and PostgreSQL; a database written before the definition is rescored."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study import keys
from study import optuna_study as ostudy
from study.export import best_configs
from study.rescore import SCORE_DEFINITION, needs_rescore
from study.runner import run_study
from study.scheduler import ConfigurationASHA
from study.score import RunEnd, score, score_at, score_curve, seed_best
from study.searcher import OptunaSearcher
from study.space import build_sampler
from study.spec import validate_spec
from study.store import Store
from tests.support import TINY_PTB_BASE, assert_one_score, tiny_ptb_spec

ROOT = Path(__file__).resolve().parents[2]
MIDSCALE_DB = ROOT / "docs/results/ptb-char/midscale/midscale.db"
CLI = [sys.executable, "-m", "study.cli"]


# ------------------------------------------------------------------ the definition
def test_score_is_the_mean_of_each_seeds_best() -> None:
    a = {1: 3.0, 2: 2.0, 3: 2.5}
    b = {1: 2.8, 2: 2.6, 3: 2.4}
    assert seed_best(a) == 2.0 and seed_best(a, up_to=1) == 3.0
    assert score([a, b]) == pytest.approx((2.0 + 2.4) / 2)
    # Not the mean curve's minimum (2.3 at epoch 2) nor the last epoch's mean (2.45).
    assert score([a, b]) != pytest.approx(min((a[e] + b[e]) / 2 for e in a))
    assert score_curve([a, b], [False, False]) == pytest.approx(
        {1: 2.9, 2: (2.0 + 2.6) / 2, 3: (2.0 + 2.4) / 2}
    )
    # A seed still running has no score at an epoch it has not reached...
    short = {1: 2.9}
    assert score_at([a, short], 2, [False, False]) is None
    # ...but one that converged keeps its best (the checkpoint kept is that epoch's).
    assert score_at([a, short], 3, [False, True]) == pytest.approx((2.0 + 2.9) / 2)
    assert score([{1: math.nan, 2: 2.0}]) == 2.0
    assert score([{1: math.nan}]) is None


# ------------------------------------------------------------------ the searcher and ASHA
def _searcher(tmp_path: Path, **overrides: Any) -> tuple[OptunaSearcher, optuna.Study]:
    data: dict[str, Any] = {
        "name": "one-score",
        "base": {"task": "digits", "hidden_size": 8, "epochs": 6, "seed": 10, "patience": 2},
        "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
        "n_trials": 2,
        "repeats": 2,
        "sampler": {"name": "random", "seed": 0},
    }
    data.update(overrides)
    spec = validate_spec(data)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 's.db'}", spec.name, build_sampler(spec))
    return OptunaSearcher(study, spec, driver_id="test:1:1"), study


def _feed(searcher: OptunaSearcher, trial_id: str, values: list[float], converged: bool) -> None:
    result: dict[str, Any] = {}
    for epoch, value in enumerate(values, start=1):
        result = {"epoch": epoch, "valid_metric": value}
        if converged and epoch == len(values):
            result["converged"] = True
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=result)


def test_a_converged_seed_completes_and_keeps_its_best(tmp_path: Path) -> None:
    searcher, study = _searcher(tmp_path)
    ids = [f"ray-{i}" for i in range(4)]
    for trial_id in ids:
        assert searcher.suggest(trial_id) is not None
    assert searcher.suggest("ray-x") is Searcher.FINISHED
    # Configuration 0: seed 0 converges at epoch 4 (best 2.0 at epoch 2), seed 1 runs all 6.
    _feed(searcher, "ray-0", [3.0, 2.0, 2.1, 2.2], converged=True)
    _feed(searcher, "ray-1", [3.1, 2.5, 2.4, 2.3, 2.35, 2.36], converged=False)
    # Configuration 1: both seeds converge.
    _feed(searcher, "ray-2", [3.0, 2.8, 2.9, 2.95], converged=True)
    _feed(searcher, "ray-3", [3.2, 2.7, 2.75, 2.8], converged=True)
    trials = {t.number: t for t in ostudy.trials(study)}
    assert trials[0].state == trials[1].state == TrialState.COMPLETE
    assert trials[0].value == pytest.approx((2.0 + 2.3) / 2)
    assert trials[1].value == pytest.approx((2.8 + 2.7) / 2)
    # The intermediate values are the score at each epoch; the last one is the value.
    assert trials[0].intermediate_values[6] == pytest.approx(trials[0].value)
    assert trials[0].intermediate_values[2] == pytest.approx((2.0 + 2.5) / 2)
    assert trials[0].user_attrs[keys.RUN_ENDS] == ["converged", "budget"]
    assert trials[1].user_attrs[keys.RUN_ENDS] == ["converged", "converged"]
    assert trials[0].user_attrs[keys.SEED_VALUES] == pytest.approx([2.0, 2.3])
    outcome = searcher.outcome(0)
    assert outcome is not None
    assert [run.ended for run in outcome.runs] == [RunEnd.CONVERGED.value, RunEnd.BUDGET.value]
    assert [run.best_epoch for run in outcome.runs] == [2, 4]
    assert outcome.final_value == pytest.approx((2.2 + 2.36) / 2)


def test_asha_judges_a_converged_seed_by_its_best(tmp_path: Path) -> None:
    """Seed 0 converged at epoch 2; the configuration is judged at rung 4 when seed 1 gets
    there, on the score (seed 0's best carried): a converged seed is done, not pruned."""
    searcher, study = _searcher(
        tmp_path,
        scheduler={"name": "asha", "grace_period": 4, "reduction_factor": 2},
        base={"task": "digits", "hidden_size": 8, "epochs": 8, "seed": 10, "patience": 1},
    )
    asha = ConfigurationASHA(searcher, grace_period=4, reduction_factor=2, max_epochs=8)
    for index in range(4):
        searcher.suggest(f"ray-{index}")

    class _Trial:
        def __init__(self, trial_id: str) -> None:
            self.trial_id = trial_id

    def feed(trial_id: str, epoch: int, value: float, converged: bool = False) -> str:
        result = {"epoch": epoch, "valid_metric": value, "converged": converged}
        decision = asha.on_trial_result(None, _Trial(trial_id), result)
        searcher.on_trial_result(trial_id, result)
        return decision

    # Configuration 0 sets the rung: seed 0 converges at 2 (best 1.0), seed 1 reaches 4 at 1.2.
    feed("ray-0", 1, 1.5)
    feed("ray-0", 2, 1.0, converged=True)
    searcher.on_trial_complete("ray-0", result={"epoch": 2, "valid_metric": 1.0})
    for epoch, value in enumerate([1.6, 1.4, 1.3, 1.2], start=1):
        assert feed("ray-1", epoch, value) == "CONTINUE"
    assert asha.halving.rungs[4] == {0: pytest.approx((1.0 + 1.2) / 2)}
    # Configuration 1 is worse at rung 4: pruned; its converged seed ends 'converged'.
    feed("ray-2", 1, 2.0)
    feed("ray-2", 2, 1.9, converged=True)
    searcher.on_trial_complete("ray-2", result={"epoch": 2, "valid_metric": 1.9})
    for epoch, value in enumerate([2.1, 2.0, 1.95], start=1):
        assert feed("ray-3", epoch, value) == "CONTINUE"
    assert feed("ray-3", 4, 1.9) == "STOP"
    searcher.on_trial_complete("ray-3", result={"epoch": 4, "valid_metric": 1.9})
    pruned = ostudy.trials(study)[1]
    assert pruned.state == TrialState.PRUNED
    assert pruned.value == pytest.approx((1.9 + 1.9) / 2)
    assert pruned.user_attrs[keys.RUN_ENDS] == ["converged", "pruned"]


# ------------------------------------------------------------------ a real study, both backends
@pytest.mark.ray
@pytest.mark.slow
def test_real_study_reads_one_score_everywhere(
    store_url: str, ray_local: None, tmp_path: Path
) -> None:
    """TPE + ASHA + repeats 2 on real PTB characters, early stopping on: Optuna's values equal
    the epochs table's per-seed minima; status, export and the report print the same number."""
    spec_data = tiny_ptb_spec(
        "one-score",
        tmp_path,
        base={**TINY_PTB_BASE, "train_tokens": 20_000, "epochs": 5, "patience": 1,
              "min_delta": 0.05},
        sampler={"name": "tpe", "seed": 0},
        scheduler={"name": "asha", "grace_period": 2, "reduction_factor": 2},
        n_trials=4,
        repeats=2,
    )  # fmt: skip
    spec = validate_spec(spec_data)
    outcome = run_study(spec, storage=store_url)
    assert outcome.status == "finished"
    study = ostudy.load_study(store_url, spec.name)
    assert ostudy.study_attrs(study)[keys.SCORE_DEFINITION] == SCORE_DEFINITION
    checked = assert_one_score(store_url, spec.name)
    assert checked[TrialState.COMPLETE] >= 1

    best = ostudy.best_complete(study)[0]
    # status prints the score of each trial; export's provenance carries it.
    status = subprocess.run(
        [*CLI, "status", spec.name, "--storage", store_url],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"{best.value:.4f}" in status.stdout
    with Store(store_url) as store:
        ((_, provenance),) = best_configs(store, spec.name, top=1)
    assert provenance["value"] == pytest.approx(best.value)
    # The report ranks configurations by the same number.
    from study.report import load_study_frames

    frames = load_study_frames(store_url, spec.name)
    from dashboards import analyze

    analysis = analyze(
        frames.trials, frames.epochs, metric=frames.metric, max_epochs=5, ends=frames.runs
    )
    table = analysis.table.configs
    row = table[table["numbers"].map(lambda n: best.number in n)].iloc[0]
    assert row["mean"] == pytest.approx(best.value)
    with Store(store_url) as store:
        runs = store.runs_frame(spec.name)
    ended = set(runs["ended"])
    assert ended <= {end.value for end in RunEnd}
    assert len(runs) == 2 * len([t for t in ostudy.trials(study) if t.state.is_finished()])


# ------------------------------------------------------------------ old databases
def test_db_upgrade_rescores_the_committed_midscale_database(tmp_path: Path) -> None:
    """The mid-scale study's unregularized configuration had three numbers (Optuna 2.0299 =
    the last epoch's mean, best_value 1.9965 = the mean curve's minimum, the report's 1.9965);
    after `db upgrade` Optuna, the store and the report agree on each trial."""
    copy = tmp_path / "midscale.db"
    shutil.copy(MIDSCALE_DB, copy)
    url = f"sqlite:///{copy}"
    with Store(url) as store:
        names = list(store.studies_frame()["name"])
    before = {
        name: {t.number: t.value for t in ostudy.trials(ostudy.load_study(url, name))}
        for name in names
    }
    assert any(needs_rescore(ostudy.load_study(url, name)) for name in names)
    done = subprocess.run(
        [*CLI, "db", "upgrade", "--storage", url], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rescored to the one score" in done.stdout
    changed = 0
    for name in names:
        study = ostudy.load_study(url, name)
        assert not needs_rescore(study)
        assert_one_score(url, name)
        after = {t.number: t.value for t in ostudy.trials(study)}
        changed += sum(
            1
            for n, v in after.items()
            if v is not None and before[name][n] is not None and abs(v - before[name][n]) > 1e-9
        )
    assert changed > 0
    # Idempotent: a second upgrade has nothing to rescore.
    again = subprocess.run(
        [*CLI, "db", "upgrade", "--storage", url], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "rescored" not in again.stdout

"""One score per trial everywhere (study.score): Optuna's value and intermediate values,
``zs_trials.best_value``, ``zs_runs``, ``status``, ``export`` and the report all read the mean over
seeds of each seed's best validation value, for complete, ASHA-pruned, converged and resumed
trials, on SQLite and PostgreSQL; a database written before the definition is rescored."""

from __future__ import annotations

import math
import shutil
import sqlite3
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


def _ends(searcher: OptunaSearcher, number: int) -> list[str]:
    """Why each seed's run ended, as the searcher hands it to the store (zs_runs.ended)."""
    outcome = searcher.outcome(number)
    assert outcome is not None
    return [run.ended for run in outcome.runs]


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
    assert _ends(searcher, 0) == ["converged", "budget"]
    assert _ends(searcher, 1) == ["converged", "converged"]
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
    assert _ends(searcher, 1) == ["converged", "pruned"]


def test_a_replacement_knows_a_seed_had_converged_before_the_cut(tmp_path: Path) -> None:
    """The patience counter is a function of the curve: a seed whose resume point shows it had
    run out of patience is done (converged), not trained again; the other seed continues."""
    import zipfile

    searcher, study = _searcher(tmp_path, n_trials=1)
    points = []
    for seed, curve in ((10, [3.0, 2.0, 2.1, 2.2]), (11, [3.0, 2.5, 2.4, 2.3])):
        directory = tmp_path / f"ckpt-{seed}"
        directory.mkdir()
        with zipfile.ZipFile(directory / "checkpoint.pt", "w") as archive:
            archive.writestr("data", b"x")  # readable as a torch archive's container
        points.append(
            {"seed": seed, "epoch": 4, "checkpoint": str(directory),
             "curve": [[e, v] for e, v in enumerate(curve, start=1)]}
        )  # fmt: skip
    ostudy.enqueue_replacement(study, {"zoneout_cell": 0.25}, replaces=99, resume_points=points)
    config = searcher.suggest("ray-0")
    assert config is not None and config["trial"]["seed"] == 11  # only seed 11 runs again
    assert searcher.suggest("ray-1") is Searcher.FINISHED
    _feed(searcher, "ray-0", [3.0, 2.5, 2.4, 2.3, 2.25, 2.2], converged=False)
    (trial,) = ostudy.trials(study)
    assert trial.state == TrialState.COMPLETE
    assert _ends(searcher, trial.number) == ["converged", "budget"]
    assert trial.value == pytest.approx((2.0 + 2.2) / 2)


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
              "min_delta": 0.1},
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
    # The tiny model gains less than min_delta per epoch: its seeds converge early.
    assert RunEnd.CONVERGED.value in ended, runs
    assert len(runs) == 2 * len([t for t in ostudy.trials(study) if t.state.is_finished()])


# ------------------------------------------------------------------ old databases
def _as_written_before_the_score(url: str, name: str) -> None:
    """Put study ``name`` back as the service wrote it before the score: Optuna's value the
    mean of the seeds' last epoch, intermediate values the seeds' mean per epoch, no mark."""
    study = ostudy.load_study(url, name)
    with Store(url) as store:
        epochs = store.epochs_frame(name)
    rewrites = {}
    for trial in ostudy.trials(study):
        mine = epochs[epochs["number"] == trial.number]
        if not trial.state.is_finished() or mine.empty:
            continue
        last = mine.sort_values("epoch").groupby("seed")["valid_metric"].last().mean()
        means = mine.groupby("epoch")["valid_metric"].mean()
        rewrites[trial.number] = ostudy.FinishedValues(
            value=float(last) if trial.state == TrialState.COMPLETE else None,
            intermediate={int(e): float(v) for e, v in means.items()},
            user_attrs={},
        )
    ostudy.rewrite_finished_values(study, rewrites)
    ostudy.set_study_attrs(study, {keys.SCORE_DEFINITION: None})


def test_db_upgrade_rescores_a_database_from_before_the_score(tmp_path: Path) -> None:
    """The mid-scale study's unregularized configuration (Figure-3 trial 7) had three numbers:
    Optuna 2.0299 (the last epoch's mean), best_value 1.9965 (the mean curve's minimum) and the
    report's 1.9965; after `db upgrade` Optuna, the store and the report agree on each trial."""
    copy = tmp_path / "midscale.db"
    shutil.copy(MIDSCALE_DB, copy)
    url = f"sqlite:///{copy}"
    with Store(url) as store:
        names = list(store.studies_frame()["name"])
        ends_before = {name: store.runs_frame(name)[["number", "seed", "ended"]] for name in names}
    # The converged studies ran with patience: some of their runs stopped on their own.
    assert any((e["ended"] == "converged").any() for e in ends_before.values())
    for name in names:
        _as_written_before_the_score(url, name)
    figure3 = "ptb-char-midscale-figure3"
    old = {t.number: t.value for t in ostudy.trials(ostudy.load_study(url, figure3))}
    assert old[7] == pytest.approx(2.0299, abs=5e-5)
    assert all(needs_rescore(ostudy.load_study(url, name)) for name in names)
    done = subprocess.run(
        [*CLI, "db", "upgrade", "--storage", url], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rescored to the one score" in done.stdout
    for name in names:
        study = ostudy.load_study(url, name)
        assert not needs_rescore(study)
        assert_one_score(url, name)
        with Store(url) as store:
            ends = store.runs_frame(name)[["number", "seed", "ended"]]
        # A run that converged stays converged (its score keeps its best after it stopped).
        converged = ends_before[name][ends_before[name]["ended"] == "converged"]
        kept = converged.merge(ends, on=["number", "seed"], suffixes=("", "_after"))
        assert len(kept) == len(converged) and (kept["ended_after"] == "converged").all()
    new = {t.number: t.value for t in ostudy.trials(ostudy.load_study(url, figure3))}
    assert new[7] == pytest.approx(1.9965, abs=5e-5)
    # Idempotent: a second upgrade has nothing to rescore.
    again = subprocess.run(
        [*CLI, "db", "upgrade", "--storage", url], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "rescored" not in again.stdout


def test_the_committed_midscale_database_holds_the_score(tmp_path: Path) -> None:
    """docs/results' database has been brought to the score (what its README quotes)."""
    copy = tmp_path / "midscale.db"  # Optuna's storage may write (WAL files): not the original
    # SQLite's backup API: a consistent copy even while a study writes the file.
    source, target = sqlite3.connect(f"file:{MIDSCALE_DB}?mode=ro", uri=True), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    url = f"sqlite:///{copy}"
    with Store(url) as store:
        names = list(store.studies_frame()["name"])
        runs = store.runs_frame("ptb-char-midscale-figure3")
    for name in names:
        assert not needs_rescore(ostudy.load_study(url, name))
        assert_one_score(url, name)
    assert set(runs["ended"]) <= {"budget", "interrupted", "failed"}


# ------------------------------------------------------------------ the report's run ends
def test_report_reads_converged_runs_and_says_which_hit_the_budget() -> None:
    """A converged run keeps its best up to the budget (it is in the table at the full budget,
    scored by its best); the summary counts how runs ended and names the configurations whose
    every run hit the budget (not converged)."""
    import pandas as pd

    from dashboards import analyze

    trials = pd.DataFrame(
        {"number": [0, 1], "state": ["COMPLETE", "COMPLETE"], "param_zoneout_cell": [0.0, 0.5]}
    )
    rows = []
    curves = {
        (0, 1): [3.0, 2.5, 2.6, 2.7],  # converged at 4 (patience 2): trained 4 of 6 epochs
        (0, 2): [3.1, 2.4, 2.45, 2.5],
        (1, 1): [3.0, 2.8, 2.6, 2.5, 2.4, 2.3],  # still improving at the budget
        (1, 2): [3.2, 2.9, 2.7, 2.6, 2.5, 2.45],
    }
    for (number, seed), values in curves.items():
        rows += [
            {"number": number, "seed": seed, "epoch": e, "valid_metric": v}
            for e, v in enumerate(values, start=1)
        ]
    epochs = pd.DataFrame(rows)
    ends = pd.DataFrame(
        {
            "number": [0, 0, 1, 1],
            "seed": [1, 2, 1, 2],
            "ended": ["converged", "converged", "budget", "budget"],
        }
    )
    analysis = analyze(trials, epochs, metric="bpc", max_epochs=6, ends=ends)
    table = analysis.table.configs.set_index("param_zoneout_cell")
    assert analysis.table.epoch.epoch == 6  # the full budget: the converged runs count
    assert table.loc[0.0, "n"] == 2 and table.loc[0.0, "mean"] == pytest.approx((2.5 + 2.4) / 2)
    assert table.loc[0.5, "mean"] == pytest.approx((2.3 + 2.45) / 2)
    summary = analysis.summary_markdown
    assert "- Runs ended: 2 converged, 2 budget" in summary
    assert (
        "1 of 2 configurations had every run end at the budget (epoch 6), not converged" in summary
    )
    assert "converged@4, converged@4" in summary and "budget@6, budget@6" in summary
    # The converged runs ended on their own: neither stopped early by a scheduler nor unfinished.
    assert analysis.curves.n_stopped_early == 0 and analysis.curves.n_unfinished == 0
    assert "Stopped early: 0 of 4 runs" in summary
    # Without the store's ends (an older database) nothing is claimed about convergence.
    plain = analyze(trials, epochs, metric="bpc", max_epochs=6)
    assert "Runs ended" not in plain.summary_markdown

"""A real study end to end on a local Ray, on SQLite and on PostgreSQL.

Real data (PTB characters, a small subset), real training, real ASHA: the tests check the
promises of the study service, not mocks of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from dashboards import serve_dashboard
from study.cli import app
from study.export import export_best
from study.report import write_study_report
from study.runner import run_study
from study.spec import validate_spec
from study.store import Store
from tests.support import (
    TINY_PTB_BASE,
    UNCLIPPED_SGD_PTB_BASE,
    ZONEOUT_SEARCH,
    free_port,
    get_json,
    tiny_ptb_spec,
)
from trials.config import load_config
from trials.train import train

pytestmark = [pytest.mark.ray, pytest.mark.slow]


MAX_EPOCHS: int = TINY_PTB_BASE["epochs"]  # 3


def small_ptb_spec(name: str, tmp_path: Path, **overrides: Any) -> Any:
    """6 trials under ASHA, over the zoneout probabilities and the learning rate."""
    data = tiny_ptb_spec(
        name,
        tmp_path,
        search={
            **ZONEOUT_SEARCH,
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
        },
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 3},
        n_trials=6,
    )
    data.update(overrides)
    return validate_spec(data)


def test_study_end_to_end(store_url: str, ray_local: None, tmp_path: Path) -> None:
    spec = small_ptb_spec("end-to-end", tmp_path)
    outcome = run_study(spec, storage=store_url)
    assert outcome.status == "finished"

    study = optuna.load_study(study_name=spec.name, storage=store_url)
    trials = study.get_trials()
    assert len(trials) == spec.n_trials
    states = {trial.state for trial in trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED}
    # ASHA stopped some trials: they are PRUNED, with fewer epochs than the budget.
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, "ASHA (reduction factor 3, grace 1) should stop some of 6 trials"
    assert complete
    with Store(store_url) as store:
        runs = store.runs_frame(spec.name).set_index("number")
        trial_rows = store.trials_frame(spec.name).set_index("number")
    for trial in pruned:
        assert max(trial.intermediate_values) < MAX_EPOCHS
        assert runs.loc[trial.number, "epochs"].max() < MAX_EPOCHS
    for trial in complete:
        assert sorted(trial.intermediate_values) == list(range(1, MAX_EPOCHS + 1))
        assert trial.value == pytest.approx(trial.intermediate_values[MAX_EPOCHS])
        assert trial_rows.loc[trial.number, "ray_trial_id"] and trial_rows.loc[trial.number, "node"]
        assert trial.user_attrs["checkpoints"][0]

    # The store has every trial and every epoch, in the same states as Optuna.
    store = Store(store_url)
    frame = store.trials_frame(spec.name).set_index("number")
    assert len(frame) == spec.n_trials
    for trial in trials:
        assert frame.loc[trial.number, "state"] == trial.state.name
        assert frame.loc[trial.number, "epochs"] == max(trial.intermediate_values)
    epochs = store.epochs_frame(spec.name)
    assert len(epochs) == sum(len(t.intermediate_values) for t in trials)
    assert not epochs.duplicated(["number", "seed", "epoch"]).any()
    for trial in trials:
        rows = epochs[epochs["number"] == trial.number].set_index("epoch")
        for epoch, value in trial.intermediate_values.items():
            assert rows.loc[epoch, "valid_metric"] == pytest.approx(value)
    assert outcome.best_value == pytest.approx(min(t.value for t in complete))

    # Export -> train reproduces the best trial's validation metric.
    (path,) = export_best(store, spec.name, top=1, out_dir=tmp_path / "export")
    text = path.read_text(encoding="utf-8")
    assert "_study:" in text and "trial_number" in text
    config = load_config(path)
    best = min(complete, key=lambda t: t.value)  # type: ignore[arg-type,return-value]
    retrained = train(config, evaluate_test=False)
    assert retrained.epochs[-1].valid_metric == pytest.approx(best.value, rel=1e-9)

    # The report's figures go into the Optuna study; optuna-dashboard serves all of it.
    report = write_study_report(store_url, spec.name, tmp_path / "report", png=False)
    assert report.html_path.is_file()
    with serve_dashboard(store_url, port=free_port(), timeout=90) as server:  # type: ignore[union-attr]
        summaries = get_json(f"{server.url}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == spec.name]
        detail = get_json(f"{server.url}/api/studies/{summary['study_id']}")
        assert len(detail["trials"]) == spec.n_trials
        by_number = {t["number"]: t for t in detail["trials"]}
        for trial in trials:
            steps = [v["step"] for v in by_number[trial.number]["intermediate_values"]]
            assert steps == sorted(trial.intermediate_values)
        assert {t["state"] for t in detail["trials"]} == {"Complete", "Pruned"}
        saved = {g["id"] for g in detail["plotly_graph_objects"]}
        assert {"surface", "marginal-zoneout_cell", "marginal-zoneout_hidden"} <= saved
        assert detail["note"]["body"].strip()

    # Running the same spec again has nothing left to do.
    again = run_study(spec, storage=store_url)
    assert again.counts["COMPLETE"] + again.counts["PRUNED"] == spec.n_trials
    store.close()


def test_failing_trials_are_fail_with_reason_and_the_study_goes_on(
    ray_local: None, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'fail.db'}"
    spec = small_ptb_spec(
        "diverging",
        tmp_path,
        base={**UNCLIPPED_SGD_PTB_BASE, "train_tokens": 6_000, "valid_tokens": 2_000},
        # A learning rate of 1e12 without clipping overflows the loss to nan/inf.
        search={"learning_rate": {"type": "categorical", "choices": [0.5, 1e12]}},
        sampler={"name": "grid"},
        scheduler={"name": "none"},
        n_trials=2,
        failure={"max_retries": 0},
    )
    run_study(spec, storage=url)
    study = optuna.load_study(study_name=spec.name, storage=url)
    by_rate = {t.params["learning_rate"]: t for t in study.get_trials()}
    assert by_rate[0.5].state == TrialState.COMPLETE
    failed = by_rate[1e12]
    assert failed.state == TrialState.FAIL
    assert "diverged" in failed.user_attrs["fail_reason"]
    frame = Store(url).trials_frame(spec.name).set_index("number")
    assert "diverged" in frame.loc[failed.number, "error"]

    result = CliRunner().invoke(app, ["status", spec.name, "--storage", url])
    assert result.exit_code == 0, result.output
    assert "FAIL" in result.output and "diverged" in result.output


def test_a_run_limited_by_n_trials_stores_the_specs_own_snapshot(
    sqlite_url: str, tmp_path: Path
) -> None:
    """n_trials= limits one run (--n-trials): the stored snapshot keeps the spec's n_trials, so
    reports read it as a spec (a snapshot of n_trials 0 was refused by the schema and read as
    loose data)."""
    from rich.console import Console

    spec = small_ptb_spec("limited", tmp_path)
    outcome = run_study(spec, storage=sqlite_url, n_trials=0, console=Console(quiet=True))
    assert outcome.opened
    with Store(sqlite_url) as store:
        stored = validate_spec(store.study_spec("limited"), "stored")
    assert stored.n_trials == spec.n_trials > 0

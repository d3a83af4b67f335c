"""The searcher's state mapping, driven the way Ray Tune's controller drives it.

The calls mirror `ray.tune.execution.tune_controller`: ``suggest`` per new trial,
``on_trial_result`` per report, ``on_trial_complete(result=...)`` when the scheduler or the
budget stops a trial, ``on_trial_complete(error=True)`` before the callbacks' ``on_trial_error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study import keys
from study.optuna_study import counted_trials, open_study, study_id
from study.reaper import DRIVER_LOST, reap_lost_trials
from study.searcher import OptunaSearcher
from study.space import build_sampler
from study.spec import validate_spec


def _spec(**overrides: Any) -> Any:
    data: dict[str, Any] = {
        "name": "searcher",
        "base": {"task": "digits", "hidden_size": 8, "epochs": 4, "seed": 10},
        "search": {
            "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5},
            "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.3},
        },
        "n_trials": 3,
        "sampler": {"name": "random", "seed": 0},
    }
    data.update(overrides)
    return validate_spec(data)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'searcher.db'}"


def _report(searcher: OptunaSearcher, trial_id: str, values: list[float]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for epoch, value in enumerate(values, start=1):
        result = {"epoch": epoch, "valid_metric": value, "node": "node-a"}
        searcher.on_trial_result(trial_id, result)
    return result


def test_full_budget_is_complete_scheduler_stop_is_pruned_error_is_fail(sqlite_url: str) -> None:
    spec = _spec()
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")

    configs = [searcher.suggest(f"ray-{index}") for index in range(3)]
    assert searcher.suggest("ray-3") is Searcher.FINISHED
    for config in configs:
        assert config is not None
        trial = config["trial"]
        assert trial["task"] == "digits" and trial["seed"] == 10
        assert 0.0 <= trial["zoneout_cell"] <= 0.5

    # ray-0 runs its 4 epochs; ray-1 is stopped by ASHA after 2; ray-2 raises in epoch 2.
    last = _report(searcher, "ray-0", [0.9, 0.7, 0.6, 0.5])
    searcher.on_trial_complete("ray-0", result=last)
    last = _report(searcher, "ray-1", [0.95, 0.9])
    searcher.prune(1, 2)  # what study.scheduler.ConfigurationASHA calls before its STOP
    searcher.on_trial_complete("ray-1", result=last)
    _report(searcher, "ray-2", [0.8])
    searcher.on_trial_complete("ray-2", error=True)
    assert searcher.outcome(2) is None  # waits for the reason from the error callback
    searcher.set_error_reason("ray-2", "TrialDiverged: training loss became nan")

    trials = {t.number: t for t in study.get_trials()}
    assert trials[0].state == TrialState.COMPLETE
    assert trials[0].value == pytest.approx(0.5)
    assert trials[0].intermediate_values == {1: 0.9, 2: 0.7, 3: 0.6, 4: 0.5}
    # Ray trial ids, nodes and epochs go to the store (the outcome the callback writes), not
    # into Optuna's rows, which every driver's start-up reads again.
    first = searcher.outcome(0)
    assert first is not None and first.nodes == ["node-a"] and first.epochs == 4
    assert [run.epochs for run in first.runs] == [4]
    assert not {"ray_trial_ids", "nodes", "epochs", "run_ends"} & set(trials[0].user_attrs)
    # The ASHA-stopped trial is PRUNED, not COMPLETE with its partial loss.
    assert trials[1].state == TrialState.PRUNED
    assert trials[1].intermediate_values == {1: 0.95, 2: 0.9}
    assert trials[2].state == TrialState.FAIL
    assert trials[2].user_attrs[keys.FAIL_REASON] == "TrialDiverged: training loss became nan"
    assert searcher.counts() == {"RUNNING": 0, "COMPLETE": 1, "PRUNED": 1, "FAIL": 1}
    assert searcher.best_value() == pytest.approx(0.5)


def test_repeats_report_the_mean_and_keep_per_seed_values(sqlite_url: str) -> None:
    spec = _spec(repeats=3, n_trials=1)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    configs = [searcher.suggest(f"ray-{index}") for index in range(3)]
    assert searcher.suggest("ray-x") is Searcher.FINISHED
    assert [c["trial"]["seed"] for c in configs] == [10, 11, 12]  # type: ignore[index]
    params = [{k: c["trial"][k] for k in ("zoneout_cell", "zoneout_hidden")} for c in configs]  # type: ignore[index]
    assert params[0] == params[1] == params[2]

    curves = {"ray-0": [0.9, 0.8, 0.7, 0.6], "ray-1": [0.8, 0.7, 0.6, 0.5], "ray-2": [1.0] * 4}
    for trial_id, values in curves.items():
        last = _report(searcher, trial_id, values)
        searcher.on_trial_complete(trial_id, result=last)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE
    assert trial.value == pytest.approx((0.6 + 0.5 + 1.0) / 3)
    assert trial.user_attrs["seed_values"] == [0.6, 0.5, 1.0]
    assert trial.intermediate_values[1] == pytest.approx((0.9 + 0.8 + 1.0) / 3)


def test_one_pruned_seed_prunes_the_configuration(sqlite_url: str) -> None:
    spec = _spec(repeats=2, n_trials=1)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", result=_report(searcher, "a", [0.5, 0.4, 0.3, 0.2]))
    assert study.get_trials()[0].state == TrialState.RUNNING  # waits for the other seed
    last = _report(searcher, "b", [0.6])
    searcher.prune(0, 1)
    searcher.on_trial_complete("b", result=last)
    assert study.get_trials()[0].state == TrialState.PRUNED


def test_finalize_fails_open_trials_and_requeues_their_parameters(sqlite_url: str) -> None:
    spec = _spec(n_trials=2)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    first = searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", result=_report(searcher, "a", [0.5, 0.4, 0.3, 0.2]))
    _report(searcher, "b", [0.7])
    assert searcher.finalize("interrupted") == [1]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    # The retired trial does not count; the study still owes one trial, and a new searcher
    # (the next run) picks up the re-enqueued parameters first.
    assert counted_trials(study) == 1
    again = OptunaSearcher(study, spec, driver_id="test:2:2")
    config = again.suggest("c")
    assert config is not None and first is not None
    failed = study.get_trials()[1]
    assert config["trial"]["zoneout_cell"] == failed.params["zoneout_cell"]
    assert again.suggest("d") is Searcher.FINISHED


def test_reaper_fails_trials_of_a_dead_driver_and_spares_live_ones(sqlite_url: str) -> None:
    spec = _spec(n_trials=3)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    import os
    import socket

    dead = OptunaSearcher(study, spec, driver_id=f"{socket.gethostname()}:999999999:1")
    dead.suggest("a")
    alive = OptunaSearcher(study, spec, driver_id=f"{socket.gethostname()}:{os.getppid()}:1")
    alive.suggest("b")
    reaped = reap_lost_trials(study, current_driver="me:1:1")
    assert reaped == [0]
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[keys.FAIL_REASON] == DRIVER_LOST
    assert trials[1].state == TrialState.RUNNING
    assert trials[2].state == TrialState.WAITING
    assert trials[2].system_attrs["fixed_params"] == trials[0].params
    assert trials[2].user_attrs["requeued_from"] == 0


def test_two_searchers_share_the_budget(sqlite_url: str) -> None:
    spec = _spec(n_trials=3)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    first = OptunaSearcher(study, spec, driver_id="h:1:1")
    second = OptunaSearcher(study, spec, driver_id="h:2:2")
    handed = 0
    for index in range(5):
        for searcher in (first, second):
            if searcher.suggest(f"{id(searcher)}-{index}") not in (None, Searcher.FINISHED):
                handed += 1
    assert handed == 3
    assert counted_trials(study) == 3
    assert sorted(t.number for t in study.get_trials()) == [0, 1, 2]


def test_searcher_state_round_trips(tmp_path: Path, sqlite_url: str) -> None:
    spec = _spec()
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="h:1:1")
    searcher.suggest("a")
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    other = OptunaSearcher(study, spec, driver_id="h:1:1")
    other.restore(str(path))
    assert other.get_state()["ray_trials"] == {"a": (0, 0)}


def test_optuna_study_on_the_url_is_shared(sqlite_url: str) -> None:
    spec = _spec()
    first = open_study(sqlite_url, spec.name)
    second = open_study(sqlite_url, spec.name)
    assert study_id(first) == study_id(second)
    assert optuna.get_all_study_names(sqlite_url) == [spec.name]


def test_reaper_spares_a_trial_another_driver_asked_for_a_moment_ago(sqlite_url: str) -> None:
    spec = _spec()
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    study.ask()  # asked, not yet stamped with its driver's id
    assert reap_lost_trials(study, current_driver="me:1:1") == []
    assert study.get_trials()[0].state == TrialState.RUNNING
    # An unstamped trial older than the staleness limit is an orphan after all.
    assert reap_lost_trials(study, current_driver="me:1:1", stale_after=0.0) == [0]


def test_a_joining_driver_gets_its_own_sampler_seed() -> None:
    spec = _spec(sampler={"name": "random", "seed": 5})
    first = build_sampler(spec)
    joined = build_sampler(spec, seed_offset=12345)
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    draws = []
    for sampler in (first, joined, build_sampler(spec)):
        study = optuna.create_study(sampler=sampler)
        draws.append([study.ask(space).params["x"] for _ in range(3)])
    assert draws[0] == draws[2]  # the spec's seed reproduces
    assert draws[0] != draws[1]


# --------------------------------------------------------------------- resume points
def _checkpoint(directory: Path) -> str:
    """A checkpoint directory as the trainable leaves it (a torch archive checkpoint.pt)."""
    import torch

    directory.mkdir(parents=True)
    torch.save({"epoch": 0}, directory / "checkpoint.pt")
    return str(directory)


def _cut_off_two_seeds(tmp_path: Path, sqlite_url: str) -> tuple[optuna.Study, Any, list[str]]:
    """One configuration, two seeds: seed 0 checkpointed after epoch 2, seed 1 after epoch 1;
    then the run is interrupted."""
    spec = _spec(repeats=2, n_trials=1)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    searcher.suggest("a")
    searcher.suggest("b")
    locations = [_checkpoint(tmp_path / "a2"), _checkpoint(tmp_path / "b1")]
    _report(searcher, "a", [0.9, 0.8])
    searcher.record_checkpoint("a", locations[0])
    _report(searcher, "b", [0.7])
    searcher.record_checkpoint("b", locations[1])
    # Written after each checkpoint: what a replacement needs survives a killed driver.
    (trial,) = study.get_trials()
    assert [p["epoch"] for p in trial.user_attrs[keys.RESUME_POINTS]] == [2, 1]
    assert searcher.finalize("interrupted") == [0]
    return study, spec, locations


def test_replacement_continues_each_seed_from_its_checkpoint(
    tmp_path: Path, sqlite_url: str
) -> None:
    study, spec, locations = _cut_off_two_seeds(tmp_path, sqlite_url)
    again = OptunaSearcher(study, spec, driver_id="test:2:2")
    configs = [again.suggest("c"), again.suggest("d")]
    assert [c["resume_from"] for c in configs] == locations  # type: ignore[index]
    assert again.suggest("e") is Searcher.FINISHED
    replacement = study.get_trials()[1]
    assert replacement.user_attrs[keys.RESUMED_FROM] == {"trial": 0, "epochs": [2, 1]}
    assert replacement.user_attrs[keys.RESUME_SKIPPED] == [None, None]
    # The curve continues: epoch 1 (both seeds had it) is reported before any new result.
    assert replacement.intermediate_values == {1: pytest.approx((0.9 + 0.7) / 2)}
    # Seed 0 continues at epoch 3, seed 1 at epoch 2; seed 0's epoch 2 is carried.
    for epoch, value in ((3, 0.6), (4, 0.5)):
        again.on_trial_result("c", {"epoch": epoch, "valid_metric": value})
    for epoch, value in ((2, 0.65), (3, 0.6), (4, 0.55)):
        again.on_trial_result("d", {"epoch": epoch, "valid_metric": value})
    again.on_trial_complete("c")
    again.on_trial_complete("d")
    replacement = study.get_trials()[1]
    assert replacement.state == TrialState.COMPLETE
    assert replacement.intermediate_values[2] == pytest.approx((0.8 + 0.65) / 2)
    assert sorted(replacement.intermediate_values) == [1, 2, 3, 4]
    assert replacement.value == pytest.approx((0.5 + 0.55) / 2)


def test_missing_or_unreadable_checkpoint_starts_that_seed_fresh_with_the_reason(
    tmp_path: Path, sqlite_url: str
) -> None:
    study, spec, locations = _cut_off_two_seeds(tmp_path, sqlite_url)
    import shutil

    shutil.rmtree(locations[0])
    (Path(locations[1]) / "checkpoint.pt").write_bytes(b"half a checkpoint")
    again = OptunaSearcher(study, spec, driver_id="test:2:2")
    configs = [again.suggest("c"), again.suggest("d")]
    assert all("resume_from" not in c for c in configs)  # type: ignore[operator]
    replacement = study.get_trials()[1]
    assert replacement.user_attrs[keys.RESUMED_FROM] == {"trial": 0, "epochs": [0, 0]}
    skipped = replacement.user_attrs[keys.RESUME_SKIPPED]
    assert "missing" in skipped[0] and "unreadable" in skipped[1]
    assert replacement.intermediate_values == {}


def test_reaped_trial_hands_its_resume_points_to_the_replacement(
    tmp_path: Path, sqlite_url: str
) -> None:
    import socket

    spec = _spec(n_trials=1)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    dead = OptunaSearcher(study, spec, driver_id=f"{socket.gethostname()}:999999999:1")
    dead.suggest("a")
    _report(dead, "a", [0.9])
    location = _checkpoint(tmp_path / "a1")
    dead.record_checkpoint("a", location)
    assert reap_lost_trials(study, current_driver="me:1:1") == [0]
    again = OptunaSearcher(study, spec, driver_id="me:1:1")
    config = again.suggest("b")
    assert config is not None and config["resume_from"] == location
    assert study.get_trials()[1].intermediate_values == {1: pytest.approx(0.9)}


def test_a_checkpoint_that_came_with_a_stopping_result_has_that_results_epoch(
    sqlite_url: str,
) -> None:
    """Tune does not hand a result that stopped the trial (ASHA, the stopper) to the searcher
    before its checkpoint: a trial stopped after epoch 2 recorded its resume point as epoch 1
    while pointing at epoch 2's checkpoint. The checkpoint's epoch is the result's."""
    spec = _spec(n_trials=1)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="h:1:1")
    searcher.suggest("a")
    searcher.on_trial_result("a", {"epoch": 1, "valid_metric": 0.9})
    searcher.record_checkpoint("a", "/ck/checkpoint_000000", {"epoch": 1, "valid_metric": 0.9})
    # Epoch 2's result stopped the trial: the searcher first sees it with its checkpoint.
    searcher.record_checkpoint("a", "/ck/checkpoint_000001", {"epoch": 2, "valid_metric": 0.8})
    (point,) = study.get_trials()[0].user_attrs[keys.RESUME_POINTS]
    assert point["epoch"] == 2 and point["checkpoint"] == "/ck/checkpoint_000001"
    assert point["curve"] == [[1, 0.9], [2, 0.8]]


def test_a_pruned_configurations_value_is_read_where_every_seed_was(sqlite_url: str) -> None:
    """Seed 0 ran ahead to epoch 2 before the configuration was pruned at epoch 1: its final
    value is the mean at epoch 1, not seed 0's epoch 2 averaged with seed 1's epoch 1."""
    spec = _spec(repeats=2, n_trials=1)
    study = open_study(sqlite_url, spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="h:1:1")
    searcher.suggest("a")
    searcher.suggest("b")
    _report(searcher, "a", [1.0, 0.5])
    last = _report(searcher, "b", [2.0])
    searcher.prune(0, 1)
    searcher.on_trial_complete("a", result={"epoch": 2, "valid_metric": 0.5})
    searcher.on_trial_complete("b", result=last)
    outcome = searcher.outcome(0)
    assert outcome is not None and outcome.state == TrialState.PRUNED
    assert outcome.value == pytest.approx(1.5)

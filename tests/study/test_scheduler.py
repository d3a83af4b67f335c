"""ASHA by configuration: seeds are one configuration's measurement, never pruned against each
other.

The oracle is Ray Tune's own successive-halving bracket (``ray.tune.schedulers.async_hyperband.
_Bracket``, private, used here only to check against): fed one value per configuration per rung,
its score there (study.score: the mean over seeds of each seed's best up to the rung) at the
moment the configuration's last seed reaches the rung, it must take the
decisions ConfigurationASHA takes, over random interleavings of 1, 2 and 3 seeds and several
reduction factors and grace periods. The searcher then tells Optuna PRUNED for exactly the
configurations the scheduler stopped, with every seed stopped, and COMPLETE for the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket
from ray.tune.search import Searcher

from study import keys
from study import optuna_study as ostudy
from study.scheduler import ConfigurationASHA, SuccessiveHalving, rung_epochs
from study.searcher import OptunaSearcher
from study.space import build_sampler
from study.spec import validate_spec
from tests.reliability.conftest import record_external


@dataclass
class _RayTrial:
    trial_id: str


def test_rungs_are_ashas_below_the_budget() -> None:
    assert rung_epochs(1, 2, 4) == [1, 2]
    assert rung_epochs(1, 2, 8) == [1, 2, 4]
    assert rung_epochs(1, 3, 8) == [1, 3]
    assert rung_epochs(2, 2.5, 20) == [2, 5, 13]  # 2, 5, 12.5 -> 13
    assert rung_epochs(5, 2, 5) == []  # grace at the budget: nothing is ever stopped early


def test_cutoff_is_the_top_fraction_of_recorded_means() -> None:
    halving = SuccessiveHalving(grace_period=1, reduction_factor=2, max_epochs=4)
    assert halving.judge(0, 1, 1.0)  # nothing recorded yet: continue
    assert not halving.judge(1, 1, 2.0)  # worse than the median of {1.0}
    assert halving.judge(2, 1, 0.5)
    assert halving.cutoff(1) == pytest.approx(float(np.nanpercentile([1.0, 2.0, 0.5], 50)))
    assert halving.judge(1, 1, 0.0)  # judged once per rung: the first verdict stands


def _spec(repeats: int, n_trials: int, epochs: int, grace: int, rf: float) -> Any:
    return validate_spec(
        {
            "name": "asha",
            "base": {"task": "digits", "hidden_size": 8, "epochs": epochs, "seed": 0},
            "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
            "sampler": {"name": "random", "seed": 0},
            "scheduler": {"name": "asha", "grace_period": grace, "reduction_factor": rf},
            "n_trials": n_trials,
            "repeats": repeats,
        }
    )


_SEEN: dict[str, int] = {"cases": 0, "configurations": 0, "pruned": 0, "seeds": 0}


def _simulate(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    repeats = rng.choice((1, 2, 3))
    rf = rng.choice((2, 3, 4, 2.5))
    grace = rng.choice((1, 2))
    epochs = rng.choice((4, 6, 9))
    n_trials = rng.randint(3, 8)
    spec = _spec(repeats, n_trials, epochs, grace, rf)
    study = ostudy.open_study(
        f"sqlite:///{tmp_path / f'a{seed}.db'}", spec.name, build_sampler(spec)
    )
    searcher = OptunaSearcher(study, spec, driver_id="h:1:1")
    scheduler = ConfigurationASHA(
        searcher, grace_period=grace, reduction_factor=rf, max_epochs=epochs
    )
    oracle = _Bracket(min_t=grace, max_t=epochs, reduction_factor=rf, s=0)
    # Per configuration, a true level; each seed draws its own noise around it.
    curves: dict[str, list[float]] = {}
    running: dict[str, int] = {}
    at_rung: dict[tuple[int, int], list[float]] = {}
    expected_stop: set[int] = set()
    stopped: dict[str, int] = {}
    concurrency = rng.randint(1, 2 * repeats)
    next_id = 0
    finished = False
    while True:
        while not finished and len(running) < concurrency:
            ray_id = f"r{next_id}"
            next_id += 1
            if searcher.suggest(ray_id) is Searcher.FINISHED:
                finished = True
                break
            level = rng.uniform(1.0, 3.0)
            curves[ray_id] = [level / (1 + 0.3 * e) + rng.gauss(0, 0.05) for e in range(epochs)]
            running[ray_id] = 0
        if not running:
            break
        ray_id = rng.choice(sorted(running))
        number, _ = searcher.slot_of(ray_id)  # type: ignore[misc]
        epoch = running[ray_id] + 1
        value = curves[ray_id][epoch - 1]
        result = {"epoch": epoch, "valid_metric": value, "node": "n"}
        decision = scheduler.on_trial_result(None, _RayTrial(ray_id), result)
        # The oracle: Ray's bracket, one entry per configuration when its last seed arrives.
        if epoch in scheduler.halving.rungs and number not in expected_stop:
            values = at_rung.setdefault((number, epoch), [])
            # The score at the rung (study.score): each seed's best up to it, then the mean.
            values.append(min(curves[ray_id][:epoch]))
            if len(values) == repeats:
                verdict = oracle.on_result(_RayTrial(f"c{number}"), epoch, -float(np.mean(values)))
                if verdict == TrialScheduler.STOP:
                    expected_stop.add(number)
        if decision == TrialScheduler.STOP:
            assert number in expected_stop, "a seed was stopped although its configuration was not"
            searcher.on_trial_complete(ray_id, result=result)
            stopped[ray_id] = epoch
            del running[ray_id]
            continue
        searcher.on_trial_result(ray_id, result)
        if epoch >= epochs:
            searcher.on_trial_complete(ray_id, result=result)
            del running[ray_id]
        else:
            running[ray_id] = epoch
    trials = {t.number: t for t in ostudy.trials(study)}
    assert len(trials) == n_trials
    for number, trial in trials.items():
        if number in expected_stop:
            assert trial.state == TrialState.PRUNED, (number, trial.state)
            rung = trial.user_attrs[keys.PRUNED_AT]
            # Every seed reached the rung it was judged at (none was cut before its siblings).
            assert all(epochs_run >= rung for epochs_run in _epochs_run(searcher, number))
            assert searcher.is_pruned(number)
        else:
            assert trial.state == TrialState.COMPLETE, (number, trial.state)
            assert _epochs_run(searcher, number) == [epochs] * repeats
    _SEEN["cases"] += 1
    _SEEN["configurations"] += len(trials)
    _SEEN["pruned"] += len(expected_stop)
    _SEEN["seeds"] += len(trials) * repeats


@pytest.mark.parametrize("seed", range(40))
def test_asha_decides_by_configuration_like_rays_bracket_on_the_score(
    tmp_path: Path, seed: int
) -> None:
    _simulate(tmp_path, seed)
    if seed == 39:
        record_external(
            "tests/study/test_scheduler.py::"
            f"test_asha_decides_by_configuration_like_rays_bracket_on_the_score[{seed}]",
            "ASHA with several seeds per configuration",
            f"{_SEEN['cases']} seeded studies (1-3 seeds, reduction factor 2, 2.5, 3 or 4, grace "
            "1 or 2, 4-9 epochs), seeds' reports in random interleavings through "
            "ConfigurationASHA and the searcher as Ray Tune calls them",
            f"every decision equal to Ray Tune's own ASHA bracket fed one score (the seeds' mean "
            "of their best up to the rung) per configuration and rung; no seed stopped unless "
            "its configuration was: "
            f"{_SEEN['pruned']} of {_SEEN['configurations']} configurations ({_SEEN['seeds']} "
            "seed runs) PRUNED with every seed past the rung, the rest COMPLETE",
        )


def test_one_seed_behind_its_sibling_is_not_judged_alone(tmp_path: Path) -> None:
    """The issue's case: seed 0 ran ahead, seed 1 reports epoch 1 worse than seed 0 did. Ray's
    ASHA stopped seed 1 against seed 0; here the configuration is judged on their mean, once."""
    spec = _spec(2, 1, 4, 1, 2)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'b.db'}", spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="h:1:1")
    scheduler = ConfigurationASHA(searcher, grace_period=1, reduction_factor=2, max_epochs=4)
    searcher.suggest("s0")
    searcher.suggest("s1")
    for epoch, value in enumerate([1.0, 0.9, 0.8, 0.7], start=1):
        result = {"epoch": epoch, "valid_metric": value}
        assert scheduler.on_trial_result(None, _RayTrial("s0"), result) == TrialScheduler.CONTINUE
        searcher.on_trial_result("s0", result)
    searcher.on_trial_complete("s0", result=result)
    for epoch, value in enumerate([2.0, 1.8, 1.6, 1.5], start=1):
        result = {"epoch": epoch, "valid_metric": value}
        assert scheduler.on_trial_result(None, _RayTrial("s1"), result) == TrialScheduler.CONTINUE
        searcher.on_trial_result("s1", result)
    searcher.on_trial_complete("s1", result=result)
    (trial,) = ostudy.trials(study)
    assert trial.state == TrialState.COMPLETE


def test_rungs_are_filled_from_the_stored_study(tmp_path: Path) -> None:
    """A resumed driver judges against the configurations the study already holds."""
    spec = _spec(1, 3, 4, 1, 2)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'p.db'}", spec.name, build_sampler(spec))
    first = OptunaSearcher(study, spec, driver_id="h:1:1")
    first.suggest("a")
    for epoch, value in enumerate([0.5, 0.4, 0.3, 0.2], start=1):
        first.on_trial_result("a", {"epoch": epoch, "valid_metric": value})
    first.on_trial_complete("a", result={"epoch": 4, "valid_metric": 0.2})
    second = OptunaSearcher(study, spec, driver_id="h:2:2")
    scheduler = ConfigurationASHA(
        second, grace_period=1, reduction_factor=2, max_epochs=4, stored=ostudy.trials(study)
    )
    second.suggest("b")
    decision = scheduler.on_trial_result(None, _RayTrial("b"), {"epoch": 1, "valid_metric": 0.9})
    assert decision == TrialScheduler.STOP  # worse than the stored configuration at epoch 1


def _epochs_run(searcher: Any, number: int) -> list[int | None]:
    """Each seed's last epoch, as the searcher hands it to the store (zs_runs.epochs)."""
    outcome = searcher.outcome(number)
    assert outcome is not None
    return [run.epochs for run in outcome.runs]

"""A study is exactly what its spec says, whatever interrupts it: property tests of the plan.

Drivers are simulated the way Ray Tune's controller drives the searcher (``suggest``,
``on_trial_result``, ``on_trial_complete``), with the runner's start-up steps (reaping the trials
of dead drivers, continuing retired trials that have no replacement). A seeded loop draws the
interruption pattern of every driver: Ctrl-C / SIGTERM (the driver retires its open trials),
SIGKILL (it leaves them RUNNING), a kill between retiring a trial and queueing its replacement,
``--n-trials`` in steps, a worker that dies under a trial, a trial whose configuration fails, and
two drivers on the study at once. Whatever the pattern, a finished study holds every point of
the plan exactly once.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study import keys
from study import optuna_study as ostudy
from study.plan import StudyPlan
from study.reaper import continue_orphans, reap_lost_trials
from study.searcher import OptunaSearcher
from study.space import build_sampler
from study.spec import validate_spec
from tests.reliability.conftest import record_external

EPOCHS = 3
WORKER_DIED = (
    "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task."
)
CONFIG_FAILED = "trials.config.ConfigError: 2000 tokens are too few for batch size 4000"


def _spec(sampler: str, repeats: int, n_trials: int, **extra: Any) -> Any:
    search: dict[str, Any] = {
        "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
        "zoneout_hidden": {"type": "categorical", "choices": [0.0, 0.05]},
    }
    if sampler != "grid":
        search = {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}}
    return validate_spec(
        {
            "name": "coverage",
            "base": {"task": "digits", "hidden_size": 8, "epochs": EPOCHS, "seed": 0},
            "search": search,
            "sampler": {"name": sampler, "seed": 0},
            "scheduler": {"name": "none"},
            "n_trials": n_trials,
            "repeats": repeats,
            **extra,
        }
    )


class _Driver:
    """One driver process: a searcher and the Ray trials it runs, advanced one epoch at a time."""

    def __init__(self, study: Any, spec: Any, index: int) -> None:
        # A pid no process has: the reaper of a later driver takes this one for dead.
        self.id = f"{socket.gethostname()}:{999_000_000 + index}:{index}"
        reap_lost_trials(study, current_driver=self.id)
        continue_orphans(study)
        self.searcher = OptunaSearcher(study, spec, driver_id=self.id)
        self.running: dict[str, int] = {}  # ray trial id -> epochs done
        self.finished = False
        self._next = 0

    def step(
        self, rng: random.Random, *, concurrency: int, fail_points: set[Any], plan: StudyPlan
    ) -> None:
        while not self.finished and len(self.running) < concurrency:
            ray_id = f"{self.id}-{self._next}"
            self._next += 1
            config = self.searcher.suggest(ray_id)
            if config is Searcher.FINISHED or config is None:
                self.finished = True
                break
            self.running[ray_id] = 0
        if not self.running:
            return
        ray_id = rng.choice(sorted(self.running))
        number, _ = self.searcher.slot_of(ray_id)  # type: ignore[misc]
        params = self.searcher.configuration(number).params
        epoch = self.running[ray_id] + 1
        if plan.key(params) in fail_points:
            self.searcher.on_trial_complete(ray_id, error=True)
            self.searcher.set_error_reason(ray_id, CONFIG_FAILED)
            del self.running[ray_id]
            return
        if rng.random() < 0.08:  # its worker dies under it (Ray's retries spent)
            self.searcher.on_trial_complete(ray_id, error=True)
            self.searcher.set_error_reason(ray_id, WORKER_DIED)
            del self.running[ray_id]
            return
        result = {"epoch": epoch, "valid_metric": 1.0 / epoch + params["zoneout_cell"], "node": "n"}
        self.searcher.on_trial_result(ray_id, result)
        if epoch >= EPOCHS:
            self.searcher.on_trial_complete(ray_id, result=result)
            del self.running[ray_id]
        else:
            self.running[ray_id] = epoch

    @property
    def done(self) -> bool:
        return self.finished and not self.running


def _retire_without_replacement(study: Any, driver: _Driver) -> None:
    """The driver dies after telling Optuna a trial is retired, before it queued the
    replacement (what continue_orphans is for)."""
    for trial in ostudy.trials(study, (TrialState.RUNNING,)):
        if trial.user_attrs.get(keys.DRIVER) == driver.id:
            study._storage.set_trial_user_attr(trial._trial_id, keys.REQUEUED, True)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            return


PATTERNS = ("finish", "ctrl-c", "sigkill", "kill-between", "n-trials-step", "two-drivers")


def _run_pattern(study: Any, spec: Any, rng: random.Random, fail_points: set[Any]) -> list[str]:
    """Drivers one after another (or two at once), each cut by a drawn pattern, until a driver
    finds nothing left to run. Returns the patterns drawn."""
    plan = StudyPlan.from_spec(spec, sampler=spec.sampler.name, points=spec.points)
    drawn = []
    for index in range(40):
        pattern = rng.choice(PATTERNS) if index < 6 else "finish"
        drawn.append(pattern)
        run_spec = spec
        if pattern == "n-trials-step":
            counted = ostudy.counted(ostudy.trials(study))
            run_spec = spec.model_copy(
                update={"n_trials": min(spec.n_trials, counted + rng.randint(1, 2))}
            )
        drivers = [_Driver(study, run_spec, index * 2)]
        if pattern == "two-drivers":
            drivers.append(_Driver(study, run_spec, index * 2 + 1))
        cut_after = rng.randint(1, 12) if pattern in ("ctrl-c", "sigkill", "kill-between") else None
        steps = 0
        while not all(driver.done for driver in drivers):
            for driver in drivers:
                driver.step(
                    rng, concurrency=rng.choice((1, 2, 3)), fail_points=fail_points, plan=plan
                )
            steps += 1
            if cut_after is not None and steps >= cut_after:
                break
            assert steps < 500, "a driver does not finish"
        if pattern == "ctrl-c":  # also SIGTERM and SIGHUP: the runner calls finalize for both
            drivers[0].searcher.finalize(
                "interrupted: the driver stopped before the trial finished"
            )
        elif pattern == "kill-between":
            _retire_without_replacement(study, drivers[0])
        if pattern == "finish" and drivers[0].done and not drivers[0].searcher.retired():
            probe = _Driver(study, spec, 1000 + index)
            if probe.searcher.suggest("probe") is Searcher.FINISHED:
                return drawn
            probe.searcher.finalize("interrupted: the driver stopped before the trial finished")
    raise AssertionError(f"the study never finished: {drawn}")


def _check_exactly_once(study: Any, spec: Any, fail_points: set[Any]) -> None:
    plan = StudyPlan.from_spec(spec, sampler=spec.sampler.name, points=spec.points)
    trials = ostudy.trials(study)
    held = [t for t in trials if not ostudy.is_retired(t)]
    assert all(t.state != TrialState.RUNNING for t in trials), "a trial is left running"
    assert not [t for t in held if t.state == TrialState.WAITING], "a point is left queued"
    per_point = Counter(plan.key(t.params) for t in held)
    if plan.exhaustive:
        expected = {plan.key(point) for point in plan.fixed[: plan.size]}
        assert set(per_point) == expected, "a point never ran, or one outside the grid did"
        assert all(count == 1 for count in per_point.values()), f"a point ran twice: {per_point}"
    for point in spec.points:  # listed points: each exactly once
        assert per_point[plan.key(point)] == 1, (
            f"listed point {point} ran {per_point[plan.key(point)]} times"
        )
    assert len(held) == plan.size
    for trial in held:
        want = TrialState.FAIL if plan.key(trial.params) in fail_points else TrialState.COMPLETE
        assert trial.state == want, (
            trial.number,
            trial.state,
            trial.user_attrs.get(keys.FAIL_REASON),
        )
    # Every retired trial is continued by exactly one trial of the same configuration.
    requeued = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(keys.REQUEUED)]
    replacements = Counter(t.user_attrs.get(keys.REQUEUED_FROM) for t in trials)
    for trial in requeued:
        assert replacements[trial.number] >= 1, f"retired trial {trial.number} was never continued"
        successors = [t for t in trials if t.user_attrs.get(keys.REQUEUED_FROM) == trial.number]
        assert all(plan.key(t.params) == plan.key(trial.params) for t in successors)
        assert len([t for t in successors if not ostudy.is_retired(t)]) <= 1


# What the cases of each property test saw, summed; its last case records one reliability row.
_SEEN: dict[str, Counter[str]] = {}


def _tally(test: str, seed: int, cases: int, study: Any, drawn: list[str], describe: str) -> None:
    seen = _SEEN.setdefault(test, Counter())
    seen.update(drawn)
    trials = ostudy.trials(study)
    seen["#cases"] += 1
    seen["#retired"] += sum(1 for t in trials if ostudy.is_retired(t))
    seen["#trials"] += len(trials)
    if seed != cases - 1:
        return
    patterns = ", ".join(f"{n} {p}" for p, n in sorted(seen.items()) if not p.startswith("#"))
    record_external(
        f"tests/study/test_plan_coverage.py::{test}[{seed}]",
        f"Interruption patterns, {describe}",
        f"{seen['#cases']} seeded studies, drivers one after another or two at once, each cut "
        f"by a drawn pattern ({patterns}); Ray's calls simulated, the runner's start-up steps "
        "(reap, continue orphans) real, SQLite",
        f"every study finished holding each planned configuration exactly once: "
        f"{seen['#trials']} trials in all, {seen['#retired']} retired (cut off or stepped back, "
        "not counted), each retired trial continued by one trial of its configuration; a "
        "configuration that failed on its own ran once (FAIL, counted)",
    )


@pytest.mark.parametrize("seed", range(24))
def test_grid_runs_every_point_exactly_once_whatever_interrupts_it(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    repeats = rng.choice((1, 2, 3))
    spec = _spec("grid", repeats, n_trials=8)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'c.db'}", spec.name, build_sampler(spec))
    plan = StudyPlan.from_spec(spec, sampler="grid")
    # A point whose configuration fails: it finishes (FAIL, counted) and is not run again.
    fail_points = {plan.key(plan.fixed[rng.randrange(len(plan.fixed))])} if seed % 3 == 0 else set()
    drawn = _run_pattern(study, spec, rng, fail_points)
    _check_exactly_once(study, spec, fail_points)
    _tally(
        "test_grid_runs_every_point_exactly_once_whatever_interrupts_it",
        seed,
        24,
        study,
        drawn,
        "grid of 8 points (1-3 seeds)",
    )


@pytest.mark.parametrize("seed", range(8))
def test_grid_smaller_budget_runs_that_many_distinct_points(tmp_path: Path, seed: int) -> None:
    rng = random.Random(100 + seed)
    spec = _spec("grid", 1, n_trials=5)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'c.db'}", spec.name, build_sampler(spec))
    drawn = _run_pattern(study, spec, rng, set())
    _check_exactly_once(study, spec, set())
    _tally(
        "test_grid_smaller_budget_runs_that_many_distinct_points",
        seed,
        8,
        study,
        drawn,
        "grid of 8 points, n_trials 5",
    )


@pytest.mark.parametrize("seed", range(8))
def test_sampled_study_finishes_n_trials_configurations(tmp_path: Path, seed: int) -> None:
    rng = random.Random(200 + seed)
    spec = _spec("random", rng.choice((1, 2)), n_trials=5)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'c.db'}", spec.name, build_sampler(spec))
    drawn = _run_pattern(study, spec, rng, set())
    _check_exactly_once(study, spec, set())
    _tally(
        "test_sampled_study_finishes_n_trials_configurations",
        seed,
        8,
        study,
        drawn,
        "random sampler, n_trials 5 (1-2 seeds)",
    )


@pytest.mark.parametrize("seed", range(10))
def test_listed_points_run_exactly_once_then_the_sampler(tmp_path: Path, seed: int) -> None:
    rng = random.Random(300 + seed)
    points = [{"zoneout_cell": 0.0}, {"zoneout_cell": 0.5}, {"zoneout_cell": 0.25}]
    spec = _spec("tpe" if seed % 2 else "random", rng.choice((1, 2, 3)), n_trials=5, points=points)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'c.db'}", spec.name, build_sampler(spec))
    drawn = _run_pattern(study, spec, rng, set())
    _check_exactly_once(study, spec, set())
    _tally(
        "test_listed_points_run_exactly_once_then_the_sampler",
        seed,
        10,
        study,
        drawn,
        "3 listed points then TPE or random, n_trials 5 (1-3 seeds)",
    )


def test_the_issue_pattern_n_trials_1_then_2_then_all(tmp_path: Path) -> None:
    """The grid {0, 0.1, 0.2, 0.3} run with --n-trials 1, then 2, then no flag ran 0.2, 0.2, 0,
    0.3 before: each point once now, in the spec's order."""
    spec = validate_spec(
        {
            "name": "steps",
            "base": {"task": "digits", "hidden_size": 8, "epochs": 1},
            "search": {"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.1, 0.2, 0.3]}},
            "sampler": {"name": "grid"},
            "scheduler": {"name": "none"},
            "n_trials": 4,
        }
    )
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'c.db'}", spec.name, build_sampler(spec))
    for index, n_trials in enumerate((1, 2, None)):
        run_spec = spec if n_trials is None else spec.model_copy(update={"n_trials": n_trials})
        driver = _Driver(study, run_spec, index)
        while not driver.done:
            driver.step(
                random.Random(index),
                concurrency=2,
                fail_points=set(),
                plan=StudyPlan.from_spec(spec, sampler="grid"),
            )
    ran = [t.params["zoneout_cell"] for t in ostudy.trials(study) if not ostudy.is_retired(t)]
    assert ran == [0.0, 0.1, 0.2, 0.3]
    record_external(
        "tests/study/test_plan_coverage.py::test_the_issue_pattern_n_trials_1_then_2_then_all",
        "Grid run with --n-trials in steps",
        "grid zoneout_cell {0, 0.1, 0.2, 0.3}, n_trials 4, run with --n-trials 1, then 2, then "
        "no flag (before: 0.2, 0.2, 0, 0.3 ran and 0.1 never did)",
        f"ran {ran}: each point once, in the spec's order",
    )


def test_a_point_asked_twice_at_once_is_run_once(tmp_path: Path) -> None:
    """Two drivers that ask at the same moment can both be handed one point (each saw it
    free): the later trial steps back (FAIL, surplus, not counted) and takes the next point."""
    spec = _spec("grid", 1, n_trials=8)
    study = ostudy.open_study(f"sqlite:///{tmp_path / 'c.db'}", spec.name, build_sampler(spec))
    plan = StudyPlan.from_spec(spec, sampler="grid")
    first = dict(plan.fixed[0])
    # What the race leaves: the same point held by two RUNNING trials from two drivers.
    ostudy.enqueue_point(study, first)
    ostudy.enqueue_point(study, first)
    searcher = OptunaSearcher(study, spec, driver_id="h:1:1")
    a = searcher.suggest("a")
    b = searcher.suggest("b")
    assert a is not None and b is not None
    assert {k: a["trial"][k] for k in first} == first
    assert plan.key(b["trial"]) != plan.key(first)
    stepped = [t for t in ostudy.trials(study) if t.user_attrs.get(keys.SURPLUS)]
    assert [t.number for t in stepped] == [1]
    assert stepped[0].user_attrs[keys.FAIL_REASON] == "trial 0 holds this point"
    assert ostudy.counted(ostudy.trials(study)) == 2
    record_external(
        "tests/study/test_plan_coverage.py::test_a_point_asked_twice_at_once_is_run_once",
        "One grid point asked by two drivers at once",
        "the first grid point held by two trials asked at the same moment",
        "the later trial stepped back (FAIL 'trial 0 holds this point', surplus, not counted) "
        "and the driver took the next point",
    )

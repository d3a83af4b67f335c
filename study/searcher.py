"""`OptunaSearcher`: the Ray Tune search algorithm that drives an Optuna study by ask/tell.

Differences from Ray's own ``OptunaSearch`` that this service depends on:

* a trial that the scheduler (ASHA) stopped early is told as PRUNED, not COMPLETE with a
  partial loss; COMPLETE means the trial ran its full epoch budget;
* a failed trial is FAIL with its reason (the exception, or the divergence) in user_attrs;
* every epoch's validation metric is reported as an intermediate value, so optuna-dashboard
  shows learning curves;
* each Optuna trial (one configuration) can run several seeds as separate Ray trials; the
  sampler sees the mean over seeds, the per-seed values stay in user_attrs;
* user_attrs link the Optuna trial to its Ray trial ids, checkpoints, epochs, seeds and nodes;
* the trial budget (``n_trials``) is shared with other drivers on the same study.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study.space import distributions
from study.spec import StudySpec
from study.store import mask_url
from trials.trainable import TRIAL_CONFIG_KEY

__all__ = [
    "DRIVER_ATTR",
    "FAIL_REASON_ATTR",
    "REQUEUED_ATTR",
    "STUDY_KEY",
    "SURPLUS_ATTR",
    "OptunaSearcher",
    "counted_trials",
]

T = TypeVar("T")

STUDY_KEY = "study"
DRIVER_ATTR = "driver"
FAIL_REASON_ATTR = "fail_reason"
REQUEUED_ATTR = "requeued"
SURPLUS_ATTR = "surplus"
METRIC = "valid_metric"


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards the study's budget: finished or running, minus the ones this
    service retired itself (re-enqueued after a lost driver, or over budget)."""
    count = 0
    for trial in _db(study.get_trials, deepcopy=False):
        if trial.state == TrialState.WAITING:
            continue
        attrs = trial.user_attrs
        if trial.state == TrialState.FAIL and (attrs.get(REQUEUED_ATTR) or attrs.get(SURPLUS_ATTR)):
            continue
        count += 1
    return count


@dataclass
class _SeedRun:
    seed_index: int
    seed: int
    ray_trial_id: str | None = None
    curve: dict[int, float] = field(default_factory=dict)
    last_epoch: int = 0
    finished_state: TrialState | None = None
    error: str | None = None
    node: str | None = None
    checkpoint: str | None = None


@dataclass
class _Configuration:
    """One Optuna trial: one point of the search space, run with ``repeats`` seeds."""

    trial: optuna.trial.Trial
    params: dict[str, Any]
    runs: list[_SeedRun]
    reported_epochs: set[int] = field(default_factory=set)
    told: bool = False
    outcome: dict[str, Any] | None = None

    @property
    def ray_trial_ids(self) -> list[str]:
        return [run.ray_trial_id for run in self.runs if run.ray_trial_id]

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    @property
    def nodes(self) -> list[str]:
        return sorted({run.node for run in self.runs if run.node})

    @property
    def max_epoch(self) -> int:
        return max(run.last_epoch for run in self.runs)

    @property
    def best_value(self) -> float | None:
        """Best epoch of the seed-mean curve (over epochs every seed has reached)."""
        common = set.intersection(*(set(run.curve) for run in self.runs))
        means = [statistics.fmean(run.curve[epoch] for run in self.runs) for epoch in common]
        finite = [value for value in means if math.isfinite(value)]
        return min(finite) if finite else None


class OptunaSearcher(Searcher):
    """Ray Tune searcher backed by an Optuna study (ask/tell)."""

    def __init__(self, study: optuna.Study, spec: StudySpec, *, driver_id: str) -> None:
        super().__init__(metric=METRIC, mode="min")
        self._study = study
        self._spec = spec
        self._driver_id = driver_id
        self._distributions = distributions(spec)
        self._configurations: dict[int, _Configuration] = {}
        self._waiting: list[tuple[int, int]] = []  # (optuna number, seed index) not yet in Ray
        self._ray_trials: dict[str, tuple[int, int]] = {}
        self._error_reasons: dict[str, str] = {}
        self._finished = False

    # Tune pickles its configuration, this searcher included, into the experiment directory
    # (tuner.pkl). Keep neither the live study (its storage holds the database URL with the
    # password) nor the spec's unmasked storage URL there. A study resumes by running its spec
    # again, never by restoring a Tune experiment; the searcher's own checkpoints go through
    # save() / get_state(), so the pickled copy never runs.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_study"] = None
        state["_configurations"] = {}  # their optuna Trials hold the study, hence the storage
        if self._spec.storage:
            state["_spec"] = self._spec.model_copy(update={"storage": mask_url(self._spec.storage)})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # --- what the driver's callback tells us -------------------------------------------------
    def set_error_reason(self, ray_trial_id: str, reason: str) -> None:
        """Ray calls the searcher before the callbacks on an error; the callback hands over the
        reason it read from the trial's error file, and we record it if the tell is pending."""
        self._error_reasons[ray_trial_id] = reason
        slot = self._ray_trials.get(ray_trial_id)
        if slot is None:
            return
        configuration = self._configurations[slot[0]]
        run = configuration.runs[slot[1]]
        run.error = reason
        if not configuration.told and self._all_finished(configuration):
            self._tell(configuration)

    def record_location(self, ray_trial_id: str, *, checkpoint: str | None) -> None:
        slot = self._ray_trials.get(ray_trial_id)
        if slot is not None and checkpoint:
            self._configurations[slot[0]].runs[slot[1]].checkpoint = checkpoint

    def slot_of(self, ray_trial_id: str) -> tuple[int, int] | None:
        """(Optuna trial number, seed index) of a Ray trial this searcher suggested."""
        return self._ray_trials.get(ray_trial_id)

    # --- Searcher interface --------------------------------------------------------------------
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        # The metric and mode are fixed by the service; Tune's own settings must agree.
        return metric in (None, METRIC) and mode in (None, "min")

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if not self._waiting and not self._start_configuration():
            self._finished = True
            return Searcher.FINISHED
        number, seed_index = self._waiting.pop(0)
        configuration = self._configurations[number]
        run = configuration.runs[seed_index]
        run.ray_trial_id = trial_id
        self._ray_trials[trial_id] = (number, seed_index)
        trial_config = {**self._spec.base.to_dict(), **configuration.params, "seed": run.seed}
        _db(
            configuration.trial.set_user_attr,
            "ray_trial_ids",
            [r.ray_trial_id for r in configuration.runs if r.ray_trial_id],
        )
        return {
            TRIAL_CONFIG_KEY: trial_config,
            STUDY_KEY: {"name": self._spec.name, "number": number, "seed_index": seed_index},
        }

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        slot = self._ray_trials.get(trial_id)
        if slot is None or METRIC not in result:
            return
        configuration = self._configurations[slot[0]]
        run = configuration.runs[slot[1]]
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        run.curve[epoch] = float(result[METRIC])
        run.last_epoch = max(run.last_epoch, epoch)
        run.node = result.get("node") or run.node
        # An epoch's intermediate value is the mean over seeds, reported once every seed has
        # reached it (Optuna keeps one value per step).
        if epoch not in configuration.reported_epochs and all(
            epoch in other.curve for other in configuration.runs
        ):
            mean = statistics.fmean(other.curve[epoch] for other in configuration.runs)
            if math.isfinite(mean) and not configuration.told:
                _db(configuration.trial.report, mean, step=epoch)
                configuration.reported_epochs.add(epoch)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        slot = self._ray_trials.get(trial_id)
        if slot is None:
            return
        configuration = self._configurations[slot[0]]
        run = configuration.runs[slot[1]]
        if result and METRIC in result:
            self.on_trial_result(trial_id, result)
        if error:
            run.finished_state = TrialState.FAIL
            run.error = run.error or self._error_reasons.get(trial_id)
        elif run.last_epoch >= self._spec.max_epochs:
            run.finished_state = TrialState.COMPLETE
        else:
            # Stopped before its budget without an error: the scheduler stopped it.
            run.finished_state = TrialState.PRUNED
        if self._all_finished(configuration) and (not error or run.error):
            self._tell(configuration)

    def configuration(self, number: int) -> _Configuration:
        return self._configurations[number]

    def outcome(self, number: int) -> dict[str, Any] | None:
        """State, value, reason, epochs... once the configuration has been told, else None."""
        return self._configurations[number].outcome

    def counts(self) -> dict[str, int]:
        counts = {"RUNNING": 0, "COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        for configuration in self._configurations.values():
            state = configuration.outcome["state"] if configuration.outcome else "RUNNING"
            counts[state] += 1
        return counts

    def best_value(self) -> float | None:
        values = [
            c.outcome["value"]
            for c in self._configurations.values()
            if c.outcome and c.outcome["state"] == "COMPLETE" and c.outcome["value"] is not None
        ]
        return min(values) if values else None

    def finalize(self, reason: str) -> list[int]:
        """Tell every configuration still open (the run was interrupted): FAIL with ``reason``,
        parameters re-enqueued so that the next run of the spec re-runs them. Returns numbers."""
        retired = []
        for number, configuration in self._configurations.items():
            if configuration.told:
                continue
            for run in configuration.runs:
                if run.finished_state is None:
                    run.finished_state = TrialState.FAIL
                    run.error = reason
            _db(configuration.trial.set_user_attr, REQUEUED_ATTR, True)
            self._tell(configuration)
            _db(
                self._study.enqueue_trial,
                configuration.params,
                user_attrs={"requeued_from": number},
            )
            retired.append(number)
        return retired

    # --- internals -----------------------------------------------------------------------------
    def _start_configuration(self) -> bool:
        if self._finished or counted_trials(self._study) >= self._spec.n_trials:
            return False
        trial = _db(self._study.ask, self._distributions)
        # Another driver may have asked at the same moment: the higher numbers beyond the
        # budget step back, so the study's total is respected.
        over = counted_trials(self._study) - self._spec.n_trials
        if over > 0:
            running = sorted(
                (
                    t.number
                    for t in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                ),
                reverse=True,
            )
            if trial.number in running[:over]:
                _db(trial.set_user_attr, SURPLUS_ATTR, True)
                _tell(self._study, trial, state=TrialState.FAIL)
                return False
        try:
            _db(trial.set_user_attr, DRIVER_ATTR, self._driver_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another driver's reaper took this trial for an orphan: leave it, ask again.
            return self._start_configuration()
        base_seed = self._spec.base.seed
        seeds = [base_seed + index for index in range(self._spec.repeats)]
        _db(trial.set_user_attr, "seeds", seeds)
        params = {name: trial.params[name] for name in self._distributions}
        runs = [_SeedRun(seed_index=index, seed=seed) for index, seed in enumerate(seeds)]
        self._configurations[trial.number] = _Configuration(trial=trial, params=params, runs=runs)
        self._waiting.extend((trial.number, index) for index in range(len(runs)))
        return True

    @staticmethod
    def _all_finished(configuration: _Configuration) -> bool:
        return all(run.finished_state is not None for run in configuration.runs)

    def _tell(self, configuration: _Configuration) -> None:
        configuration.told = True
        trial = configuration.trial
        runs = configuration.runs
        _db(trial.set_user_attr, "ray_trial_ids", [run.ray_trial_id for run in runs])
        _db(trial.set_user_attr, "epochs", [run.last_epoch for run in runs])
        _db(trial.set_user_attr, "nodes", sorted({run.node for run in runs if run.node}))
        _db(trial.set_user_attr, "checkpoints", [run.checkpoint for run in runs])
        finals = [run.curve[run.last_epoch] if run.last_epoch else None for run in runs]
        _db(trial.set_user_attr, "seed_values", finals)
        states = [run.finished_state for run in runs]
        value: float | None = None
        error: str | None = None
        if TrialState.FAIL in states:
            reasons = [
                run.error or "the trial raised an error"
                for run in runs
                if run.finished_state == TrialState.FAIL
            ]
            error = "; ".join(dict.fromkeys(reasons))
            _db(trial.set_user_attr, FAIL_REASON_ATTR, error)
            _tell(self._study, trial, state=TrialState.FAIL)
            state = "FAIL"
        elif TrialState.PRUNED in states:
            _tell(self._study, trial, state=TrialState.PRUNED)
            state = "PRUNED"
        else:
            value = statistics.fmean(v for v in finals if v is not None)
            _tell(self._study, trial, value)
            state = "COMPLETE"
        configuration.outcome = {
            "state": state,
            # For PRUNED/FAIL: the mean last-epoch value of the seeds that reported one.
            "value": value if value is not None else _mean_or_none(finals),
            "best_value": configuration.best_value,
            "error": error,
            "epochs": configuration.max_epoch,
            "nodes": configuration.nodes,
            "checkpoints": [run.checkpoint for run in runs],
        }

    # --- save / restore (Tune's experiment checkpoints) ----------------------------------------
    def get_state(self) -> dict[str, Any]:
        # The Optuna study itself lives in the database; only the mapping is ours to keep.
        return {"ray_trials": dict(self._ray_trials), "driver_id": self._driver_id}

    def set_state(self, state: dict[str, Any]) -> None:
        self._ray_trials = dict(state.get("ray_trials", {}))

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))


_RETRY_SECONDS = 90.0


def _db(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one Optuna storage call, waiting out a lost database connection.

    A PostgreSQL restart kills the connection a statement is running on; the statement's
    transaction is rolled back, so running it again is safe. Other errors pass through.
    """
    import sqlalchemy.exc

    deadline = time.monotonic() + _RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return call(*args, **kwargs)
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError,
        ):
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _tell(
    study: optuna.Study,
    trial: optuna.trial.Trial,
    value: float | None = None,
    *,
    state: TrialState | None = None,
) -> None:
    try:
        _db(study.tell, trial, value, state=state, skip_if_finished=True)
    except RuntimeError as error:
        # GridSampler calls Study.stop() once its grid is used up, which only works inside
        # optimize(); with ask/tell the state is already stored (Optuna sets it in a finally),
        # and the searcher stops asking on its own budget.
        if "Study.stop" not in str(error):
            raise


def _mean_or_none(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def new_driver_id() -> str:
    """host:pid:start-time, so a reaper on the same host can tell whether the driver lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"

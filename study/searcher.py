"""`OptunaSearcher`: the Ray Tune search algorithm that drives an Optuna study by ask/tell.

Differences from Ray's own ``OptunaSearch`` that this service depends on:

* a configuration that the scheduler (study.scheduler: ASHA over the score) stopped early
  is told as PRUNED, not COMPLETE with a partial loss; COMPLETE means every seed ran its full
  epoch budget or converged before it;
* a configuration that failed is FAIL with its reason (the exception, or the divergence) in
  user_attrs; one cut off by the infrastructure (study.faults) or by the driver's own stop is
  retired (FAIL, ``keys.REQUEUED``, ``keys.RETIRED_BECAUSE``) and a replacement continues it
  from its checkpoints: it does not count towards the budget;
* which configuration runs next is the plan's (study.plan): the points the spec fixes (a grid,
  listed points), each once, read from the stored trials; then the sampler's suggestions;
* a trial's value is its score (study.score: the mean over seeds of each seed's best validation
  value), and the score at each epoch is reported as an intermediate value, so optuna-dashboard
  shows the same number the report ranks by;
* each Optuna trial (one configuration) can run several seeds as separate Ray trials; the
  sampler sees the score over seeds, the per-seed values stay in user_attrs; a seed may stop
  on its own when it converges (the trial config's ``patience``), and why each seed's run
  ended is recorded (study.score.RunEnd);
* user_attrs link the Optuna trial to its Ray trial ids, checkpoints, epochs, seeds and nodes,
  and name each seed's recurrent layer path (with its fallback's reason, when it fell back);
* the trial budget (``n_trials``) is shared with other drivers on the same study.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study import keys
from study import optuna_study as ostudy
from study.faults import Fault, classify
from study.ladder import Promotion
from study.plan import Retired, StudyPlan, TrialEnd
from study.resume import ResumePoint, SeedStart, plan_starts
from study.score import RunEnd, failure_end, run_record, score, score_curve, seed_best
from study.space import distributions
from study.spec import StudySpec
from study.store import RunRecord, mask_url
from trials.train import epochs_without_improvement
from trials.trainable import (
    CONVERGED_KEY,
    LAYER_FALLBACK_KEY,
    LAYER_PATH_KEY,
    RESUME_FROM_KEY,
    TRIAL_CONFIG_KEY,
)

__all__ = ["CUT_OFF_PREFIX", "INTERRUPTED", "STUDY_KEY", "OptunaSearcher", "TrialOutcome"]

STUDY_KEY = "study"  # frame-contract: not a column (the Ray config's key)
# The reason of a trial retired because the driver stopped (Ctrl-C, SIGTERM, its own stop):
# display text only (how the trial ended is TrialOutcome.end, stored as zs_trials.end_reason).
INTERRUPTED = "interrupted: the driver stopped before the trial finished"
# The reason of a trial retired because its worker, node or disk failed it starts with this
# (display text only, as INTERRUPTED).
CUT_OFF_PREFIX = "cut off by the infrastructure: "
# A configuration cut off by the infrastructure this many times in one run stops the run.
_MAX_CUTS_PER_RUN = 3
METRIC = "valid_metric"  # frame-contract: not a column (Ray's result key)
_EPOCH = "epoch"  # frame-contract: not a column (Ray's result key)
_SHOWN_STATES = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class TrialOutcome:
    """What the searcher told Optuna about one configuration (all its seeds)."""

    state: TrialState
    end: TrialEnd  # why it ended (stored as zs_trials.end_reason)
    # The score (study.score): COMPLETE at the end of its runs; PRUNED and FAIL at the last
    # epoch every seed reached (or converged before), when there is one.
    value: float | None
    final_value: float | None  # the seeds' mean at their last epoch (shows overfitting)
    runs: list[RunRecord]  # each seed's run: why it ended, its last and best epoch, in seed order
    error: str | None
    epochs: int
    nodes: list[str]
    checkpoints: list[str | None]

    @property
    def retired(self) -> Retired | None:
        """Why the run (not the configuration) cut it off, when it did: FAIL, continued by a
        replacement (``end.retired``)."""
        return self.end.retired


@dataclass
class _SeedRun:
    seed_index: int
    seed: int
    ray_trial_id: str | None = None
    curve: dict[int, float] = field(default_factory=dict)
    last_epoch: int = 0
    finished_state: TrialState | None = None
    converged: bool = False  # it stopped on its own: patience ran out (study.score.RunEnd)
    error: str | None = None
    # Set when the run, not the configuration, ended this seed (study.faults, or the driver
    # stopping): the seed is continued from its checkpoint by a replacement.
    cut: Retired | None = None
    node: str | None = None
    # The recurrent layer's path its reports named (trials.trainable.LAYER_PATH_KEY) and why it
    # fell back from the preferred one, if it did.
    layer_path: str | None = None
    layer_fallback: str | None = None
    checkpoint: str | None = None
    checkpoint_epoch: int = 0
    # Set on a replacement's seed that continues the replaced trial's checkpoint.
    resume_from: str | None = None
    carried_epochs: int = 0

    def resume_point(self) -> ResumePoint | None:
        if self.checkpoint is None or self.checkpoint_epoch <= 0:
            return None
        curve = tuple(sorted((e, v) for e, v in self.curve.items() if e <= self.checkpoint_epoch))
        return ResumePoint(self.seed, self.checkpoint_epoch, self.checkpoint, curve)


@dataclass
class _Configuration:
    """One Optuna trial: one point of the search space, run with ``repeats`` seeds."""

    trial: optuna.trial.Trial
    params: dict[str, Any]
    runs: list[_SeedRun]
    replaces: int | None = None  # the retired trial whose checkpoints this one continues
    reported_epochs: set[int] = field(default_factory=set)
    pruned_at: int | None = None  # the rung epoch at which the scheduler stopped it
    told: bool = False
    outcome: TrialOutcome | None = None

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

    def score_curve(self) -> dict[int, float]:
        """The score at each epoch every seed has reached (or converged before)."""
        return score_curve([run.curve for run in self.runs], [run.converged for run in self.runs])

    @property
    def score(self) -> float | None:
        """The score so far: at the last epoch where it is defined (every seed's best)."""
        curve = self.score_curve()
        return curve[max(curve)] if curve else None

    def final_mean(self) -> float | None:
        """The seeds' mean at their last epoch (not the score: it shows overfitting)."""
        return _mean_or_none([run.curve.get(run.last_epoch) for run in self.runs])

    def resume_points(self) -> list[dict[str, Any] | None]:
        points = [run.resume_point() for run in self.runs]
        return [point.to_json() if point else None for point in points]


class OptunaSearcher(Searcher):
    """Ray Tune searcher backed by an Optuna study (ask/tell)."""

    def __init__(
        self,
        study: optuna.Study,
        spec: StudySpec,
        *,
        driver_id: str,
        recorded_epochs: Callable[[int, int], frozenset[int]] | None = None,
    ) -> None:
        super().__init__(metric=METRIC, mode="min")
        self._study = study
        # (trial number, seed) -> the epochs the store holds: a replacement continues a
        # checkpoint only when all epochs up to it are on record (study.resume.plan_starts).
        self._recorded_epochs = recorded_epochs
        self._spec = spec
        self._driver_id = driver_id
        self._distributions = distributions(spec)
        self._plan = StudyPlan.from_spec(spec, sampler=spec.sampler.name, points=spec.points)
        self._configurations: dict[int, _Configuration] = {}
        self._waiting: list[tuple[int, int]] = []  # (optuna number, seed index) not yet in Ray
        self._ray_trials: dict[str, tuple[int, int]] = {}
        self._error_reasons: dict[str, str] = {}
        self._finished = False
        # Set when the run must stop (a full disk, a point cut off again and again): no new
        # configuration starts, and the runner's stopper ends the running ones.
        self.stop_reason: str | None = None
        self._infrastructure_cuts: dict[tuple[Any, ...], int] = {}
        # A promoted study (study.ladder): each configuration's trial in the source study.
        promoted = ostudy.study_attrs(study).get(keys.PROMOTED_FROM) if spec.promote else None
        self._source_trials = (
            Promotion.from_json(promoted).source_trials(tuple(spec.search)) if promoted else {}
        )

    # Tune pickles its configuration, this searcher included, into the experiment directory
    # (tuner.pkl). Keep neither the live study (its storage holds the database URL with the
    # password) nor the spec's unmasked storage URL there. A study resumes by running its spec
    # again, never by restoring a Tune experiment; the searcher's own checkpoints go through
    # save() / get_state(), so the pickled copy never runs.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_study"] = None
        state["_configurations"] = {}  # their optuna Trials hold the study, hence the storage
        state["_recorded_epochs"] = None  # a store's method: its engine and URL
        if self._spec.storage:
            state["_spec"] = self._spec.model_copy(update={"storage": mask_url(self._spec.storage)})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # --- what the driver's callback tells us -------------------------------------------------
    def set_error_reason(self, ray_trial_id: str, reason: str) -> None:
        """Ray calls the searcher before the callbacks on an error; the callback hands over the
        reason it read from the trial's error file, and we record it if the tell is pending. A
        reason that is the infrastructure's (study.faults) cuts the seed instead of failing
        the configuration."""
        self._error_reasons[ray_trial_id] = reason
        slot = self._ray_trials.get(ray_trial_id)
        if slot is None:
            return
        configuration = self._configurations[slot[0]]
        run = configuration.runs[slot[1]]
        run.error = reason
        fault = classify(reason)
        if fault == Fault.INTERRUPTED:
            run.cut = Retired.INTERRUPTED
            run.error = INTERRUPTED
        elif fault != Fault.TRIAL:
            run.cut = Retired.INFRASTRUCTURE
            run.error = f"{CUT_OFF_PREFIX}{reason}"
            if fault == Fault.DISK_FULL:
                self._stop(f"the disk is full ({reason})")
        if not configuration.told and self._all_finished(configuration):
            self._tell(configuration)

    def record_checkpoint(
        self, ray_trial_id: str, location: str | None, result: dict[str, Any] | None = None
    ) -> None:
        """A seed's checkpoint is on storage: remember it, and write the configuration's resume
        points into the Optuna trial so that a replacement can continue from them even if this
        driver dies without warning. ``result`` is the report the checkpoint came with (the
        trial's last result): its epoch is the checkpoint's. Tune hands a result to the searcher
        before its checkpoint only when the scheduler lets the trial go on; a result that
        stopped it (ASHA, the stopper) reaches the searcher after the checkpoint, so the epoch
        is taken from ``result``, never assumed to be the last one the searcher saw."""
        slot = self._ray_trials.get(ray_trial_id)
        if slot is None or not location:
            return
        if result and METRIC in result and _EPOCH in result:
            self.on_trial_result(ray_trial_id, result)
        configuration = self._configurations[slot[0]]
        run = configuration.runs[slot[1]]
        run.checkpoint = location
        epoch = result.get(_EPOCH) if result else None
        run.checkpoint_epoch = int(epoch) if epoch else run.last_epoch
        if not configuration.told:
            ostudy.set_trial_attr(
                configuration.trial, keys.RESUME_POINTS, configuration.resume_points()
            )

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
        while not self._waiting:
            if not self._start_configuration():
                self._finished = True
                return Searcher.FINISHED
        number, seed_index = self._waiting.pop(0)
        configuration = self._configurations[number]
        run = configuration.runs[seed_index]
        run.ray_trial_id = trial_id
        self._ray_trials[trial_id] = (number, seed_index)
        trial_config = {
            **self._spec.base.to_dict(),
            **configuration.params,
            "seed": run.seed,  # frame-contract: not a column (a TrialConfig key)
        }
        ray_config: dict[str, Any] = {
            TRIAL_CONFIG_KEY: trial_config,
            STUDY_KEY: {
                "name": self._spec.name,
                "number": number,  # frame-contract: not a column (the Ray config's)
                "seed_index": seed_index,
            },
        }
        if run.resume_from:
            ray_config[RESUME_FROM_KEY] = run.resume_from
        return ray_config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        slot = self._ray_trials.get(trial_id)
        if slot is None or METRIC not in result:
            return
        configuration = self._configurations[slot[0]]
        run = configuration.runs[slot[1]]
        epoch = int(result.get(_EPOCH, result.get("training_iteration", 0)))
        run.curve[epoch] = float(result[METRIC])
        run.last_epoch = max(run.last_epoch, epoch)
        run.converged = run.converged or bool(result.get(CONVERGED_KEY))
        run.node = result.get("node") or run.node
        run.layer_path = result.get(LAYER_PATH_KEY) or run.layer_path
        run.layer_fallback = result.get(LAYER_FALLBACK_KEY) or run.layer_fallback
        self._report_common_epochs(configuration)

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
        elif run.converged or run.last_epoch >= self._spec.max_epochs:
            # A converged seed is done, whatever the scheduler does with its siblings.
            run.finished_state = TrialState.COMPLETE
        elif configuration.pruned_at is not None:
            run.finished_state = TrialState.PRUNED
        elif self.stop_reason is not None:
            # The runner's stopper ended it: the run stops, the configuration is continued.
            run.finished_state = TrialState.FAIL
            run.cut = Retired.INTERRUPTED
            run.error = f"{INTERRUPTED} ({self.stop_reason})"
        else:
            run.finished_state = TrialState.FAIL
            run.error = (
                f"the trial ended after epoch {run.last_epoch} of {self._spec.max_epochs} "
                "without an error or a scheduler's decision"
            )
        if error and run.error is None:
            return  # the error callback brings the reason, and then we tell
        if self._all_finished(configuration):
            self._tell(configuration)

    # --- what the scheduler tells us (study.scheduler.ConfigurationASHA) -----------------------
    def prune(self, number: int, epoch: int) -> None:
        """The scheduler stopped configuration ``number`` at rung ``epoch``: every seed stops
        (the running ones at their next report; the ones not started yet never start)."""
        configuration = self._configurations[number]
        if configuration.pruned_at is not None:
            return
        configuration.pruned_at = epoch
        ostudy.set_trial_attr(configuration.trial, keys.PRUNED_AT, epoch)
        not_started = {index for n, index in self._waiting if n == number}
        self._waiting = [(n, index) for n, index in self._waiting if n != number]
        for index in not_started:
            configuration.runs[index].finished_state = TrialState.PRUNED
        if self._all_finished(configuration) and not configuration.told:
            self._tell(configuration)

    def is_pruned(self, number: int) -> bool:
        configuration = self._configurations.get(number)
        return configuration is not None and configuration.pruned_at is not None

    def configuration(self, number: int) -> _Configuration:
        return self._configurations[number]

    def outcome(self, number: int) -> TrialOutcome | None:
        """State, value, reason, epochs... once the configuration has been told, else None."""
        return self._configurations[number].outcome

    def counts(self) -> dict[str, int]:
        """Configurations by state name (RUNNING until told), for the progress display."""
        counts = {state.name: 0 for state in _SHOWN_STATES}
        for configuration in self._configurations.values():
            state = configuration.outcome.state if configuration.outcome else TrialState.RUNNING
            counts[state.name] += 1
        return counts

    def best_value(self) -> float | None:
        """The best score of the configurations completed in this run."""
        values = [
            c.outcome.value
            for c in self._configurations.values()
            if c.outcome and c.outcome.state == TrialState.COMPLETE and c.outcome.value is not None
        ]
        return min(values) if values else None

    def finalize(self, reason: str) -> list[int]:
        """Tell every configuration still open (the run stopped: Ctrl-C, SIGTERM, the stopper):
        its unfinished seeds are cut with ``reason``, and the configuration is retired and
        queued to continue from each seed's last checkpoint (unless a seed failed on its own,
        which fails it). Returns the numbers of the configurations it retired (those the run
        left open); :meth:`retired` lists every configuration this run retired."""
        open_now = []
        for number, configuration in self._configurations.items():
            if configuration.told:
                continue
            open_now.append(number)
            for run in configuration.runs:
                if run.finished_state is None or (
                    run.finished_state == TrialState.FAIL and run.error is None
                ):
                    run.finished_state = TrialState.FAIL
                    run.cut = run.cut or Retired.INTERRUPTED
                    run.error = reason
            self._tell(configuration)
        return [number for number in open_now if number in self.retired()]

    @property
    def plan(self) -> StudyPlan:
        return self._plan

    def retired(self) -> list[int]:
        """Configurations this run retired (to be continued), by number."""
        return [
            number
            for number, configuration in self._configurations.items()
            if configuration.outcome is not None and configuration.outcome.retired is not None
        ]

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._finished = True

    # --- internals -----------------------------------------------------------------------------
    def _start_configuration(self) -> bool:
        """Ask Optuna for the next configuration of the plan; False when the plan is done."""
        if self._finished:
            return False
        stored = ostudy.trials(self._study)
        if ostudy.counted(stored) >= self._spec.n_trials:
            return False
        if not any(t.state == TrialState.WAITING for t in stored):
            remaining = self._plan.remaining(stored)
            if self._plan.exhaustive and not remaining:
                return False  # every grid point is held (queued, running or finished)
            if remaining and not self._plan.exhaustive:
                # Listed points before the sampler's own suggestions (a grid's sampler takes
                # the next point itself: study.plan.PlanSampler).
                ostudy.enqueue_point(self._study, remaining[0])
        trial = ostudy.ask(self._study, self._distributions)
        if self._step_back_if_held(trial):
            return self._start_configuration()
        try:
            ostudy.set_trial_attr(trial, keys.DRIVER, self._driver_id)
        except ostudy.UpdateFinishedTrialError:
            # Another driver's reaper took this trial for an orphan: leave it, ask again.
            return self._start_configuration()
        base_seed = self._spec.base.seed
        seeds = [base_seed + index for index in range(self._spec.repeats)]
        ostudy.set_trial_attr(trial, keys.SEEDS, seeds)
        params = {name: trial.params[name] for name in self._distributions}
        source_trial = self._source_trials.get(self._plan.key(params))
        if source_trial is not None:
            ostudy.set_trial_attr(trial, keys.SOURCE_TRIAL, source_trial)
        attrs = ostudy.trial_attrs(trial)
        replaces = attrs.get(keys.REQUEUED_FROM)
        starts = plan_starts(
            attrs.get(keys.RESUME_POINTS),
            seeds,
            replaces=replaces,
            max_epochs=self._spec.max_epochs,
            recorded=(
                None
                if replaces is None or self._recorded_epochs is None
                else functools.partial(self._recorded_epochs, replaces)
            ),
        )
        base = self._spec.base
        runs = [
            _start_run(index, seed, start, self._spec.max_epochs, base.patience, base.min_delta)
            for index, (seed, start) in enumerate(zip(seeds, starts, strict=True))
        ]
        configuration = _Configuration(trial=trial, params=params, runs=runs, replaces=replaces)
        self._configurations[trial.number] = configuration
        if replaces is not None:
            self._record_continuation(configuration, starts)
        self._waiting.extend(
            (trial.number, run.seed_index) for run in runs if run.finished_state is None
        )
        if self._all_finished(configuration):  # every seed had finished before the cut
            self._tell(configuration)
        return True

    def _step_back_if_held(self, trial: optuna.trial.Trial) -> bool:
        """A trial asked beyond the budget, or for a point another trial holds (two drivers
        asked at the same moment, or a point queued twice), steps back: FAIL with
        ``keys.SURPLUS``, so it neither counts nor holds its point."""
        stored = ostudy.trials(self._study)
        mine = next(t for t in stored if t.number == trial.number)
        held_by = self._plan.held_before(mine, stored)
        over = ostudy.counted(stored) - self._spec.n_trials
        surplus = False
        if over > 0:
            # The higher numbers beyond the budget step back, so the study's total holds.
            running = sorted(
                (t.number for t in stored if t.state == TrialState.RUNNING), reverse=True
            )
            surplus = trial.number in running[:over]
        if held_by is None and not surplus:
            return False
        ostudy.set_trial_attr(trial, keys.SURPLUS, True)
        if held_by is not None:
            ostudy.set_trial_attr(
                trial, keys.FAIL_REASON, f"trial {held_by.number} holds this point"
            )
        ostudy.tell(self._study, trial, state=TrialState.FAIL)
        if surplus:
            self._finished = True
        return held_by is not None and not surplus

    def _record_continuation(self, configuration: _Configuration, starts: list[SeedStart]) -> None:
        """A replacement: record what it continues (and why a seed starts fresh), and report
        the intermediate values it carries, so its learning curve continues the replaced one."""
        trial = configuration.trial
        carried = [run.carried_epochs for run in configuration.runs]
        ostudy.set_trial_attr(
            trial,
            keys.RESUMED_FROM,
            {"trial": configuration.replaces, "epochs": carried},  # frame-contract: not a column
        )
        ostudy.set_trial_attr(trial, keys.RESUME_SKIPPED, [start.skipped for start in starts])
        # Cut off again before its first checkpoint, it still hands on what it carries.
        ostudy.set_trial_attr(trial, keys.RESUME_POINTS, configuration.resume_points())
        self._report_common_epochs(configuration)

    def _report_common_epochs(self, configuration: _Configuration) -> None:
        """An epoch's intermediate value is the score at that epoch, reported once every seed
        has reached it or converged before it (Optuna keeps one value per step)."""
        if configuration.told:
            return
        curve = configuration.score_curve()
        for epoch in sorted(set(curve) - configuration.reported_epochs):
            ostudy.report(configuration.trial, curve[epoch], step=epoch)
            configuration.reported_epochs.add(epoch)

    @staticmethod
    def _all_finished(configuration: _Configuration) -> bool:
        return all(run.finished_state is not None for run in configuration.runs)

    def _tell(self, configuration: _Configuration) -> None:
        """Tell Optuna the configuration's outcome, once every seed has ended:
        FAIL if a seed failed on its own; PRUNED if the scheduler stopped it; retired (FAIL,
        continued by a replacement) if the run cut a seed off; else COMPLETE."""
        configuration.told = True
        trial = configuration.trial
        runs = configuration.runs
        # Optuna keeps what optuna-dashboard shows beside the value (the seeds, each seed's best
        # and its checkpoint, which `compare --test auto` opens); the rest of a trial's record
        # (Ray trial ids, nodes, epochs, the layer's path, why each run ended) is the store's
        # (zs_trials, zs_runs): every attribute is a row that each driver's start-up and every
        # Optuna load reads again.
        ostudy.set_trial_attr(trial, keys.CHECKPOINTS, [run.checkpoint for run in runs])
        ostudy.set_trial_attr(trial, keys.SEED_VALUES, [seed_best(run.curve) for run in runs])
        ends = [self._run_end(configuration, run) for run in runs]
        failed = [run for run in runs if run.finished_state == TrialState.FAIL and run.cut is None]
        cut = [run for run in runs if run.cut is not None]
        value: float | None = None
        error: str | None = None
        retired: Retired | None = None
        end: TrialEnd
        if failed:
            error = "; ".join(
                dict.fromkeys(run.error or "the trial raised an error" for run in failed)
            )
            ostudy.set_trial_attr(trial, keys.FAIL_REASON, error)
            ostudy.tell(self._study, trial, state=TrialState.FAIL)
            state = TrialState.FAIL
            diverged = all(
                ended == RunEnd.DIVERGED
                for run, ended in zip(runs, ends, strict=True)
                if run.finished_state == TrialState.FAIL and run.cut is None
            )
            end = TrialEnd.DIVERGED if diverged else TrialEnd.FAILED
        elif configuration.pruned_at is not None or any(
            run.finished_state == TrialState.PRUNED for run in runs
        ):
            ostudy.tell(self._study, trial, state=TrialState.PRUNED)
            state = TrialState.PRUNED
            end = TrialEnd.PRUNED
        elif cut:
            retired = (
                Retired.INTERRUPTED
                if all(run.cut == Retired.INTERRUPTED for run in cut)
                else Retired.INFRASTRUCTURE
            )
            error = "; ".join(dict.fromkeys(run.error or retired.value for run in cut))
            self._retire(configuration, retired, error)
            state = TrialState.FAIL
            end = TrialEnd.of_retired(retired)
        else:
            value = score([run.curve for run in runs])
            if value is None:  # no finite value in some seed: nothing to rank by
                error = "a seed has no finite validation value"
                ostudy.set_trial_attr(trial, keys.FAIL_REASON, error)
                ostudy.tell(self._study, trial, state=TrialState.FAIL)
                state = TrialState.FAIL
                end = TrialEnd.FAILED
            else:
                ostudy.tell(self._study, trial, value)
                state = TrialState.COMPLETE
                end = TrialEnd.COMPLETE
        # A pruned trial's value is Optuna's: its last intermediate value, which is the score
        # at the last epoch every seed reached (configuration.score).
        configuration.outcome = TrialOutcome(
            state=state,
            end=end,
            value=value if value is not None else configuration.score,
            final_value=configuration.final_mean(),
            runs=[
                run_record(
                    r.seed,
                    r.curve,
                    e,
                    layer_path=r.layer_path,
                    layer_fallback=r.layer_fallback if r.layer_path else None,
                )
                for r, e in zip(runs, ends, strict=True)
            ],
            error=error,
            epochs=configuration.max_epoch,
            nodes=configuration.nodes,
            checkpoints=[run.checkpoint for run in runs],
        )

    def _run_end(self, configuration: _Configuration, run: _SeedRun) -> RunEnd:
        """Why one seed's run ended (study.score.RunEnd), once every seed has ended."""
        if run.cut is not None:
            return RunEnd.INTERRUPTED
        if run.finished_state == TrialState.FAIL:
            return failure_end(run.error)
        if run.converged:
            return RunEnd.CONVERGED
        if run.finished_state == TrialState.PRUNED or (
            configuration.pruned_at is not None and run.last_epoch < self._spec.max_epochs
        ):
            return RunEnd.PRUNED
        return RunEnd.BUDGET

    def _retire(self, configuration: _Configuration, because: Retired, reason: str) -> None:
        """FAIL the trial as the run's doing (it does not count) and queue its replacement,
        which continues each seed from its last checkpoint. A point cut off by the
        infrastructure again and again in one run stops the run: retrying it would loop."""
        trial = configuration.trial
        ostudy.retire_trial(
            self._study,
            trial,
            configuration.params,
            reason=reason,
            because=because.value,
            resume_points=configuration.resume_points(),
        )
        if because == Retired.INFRASTRUCTURE:
            point = self._plan.key(configuration.params)
            self._infrastructure_cuts[point] = self._infrastructure_cuts.get(point, 0) + 1
            if self._infrastructure_cuts[point] >= _MAX_CUTS_PER_RUN:
                self._stop(
                    f"trial {trial.number}'s configuration was cut off "
                    f"{_MAX_CUTS_PER_RUN} times in this run ({reason})"
                )

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


def _start_run(
    index: int, seed: int, start: SeedStart, max_epochs: int, patience: int | None, min_delta: float
) -> _SeedRun:
    run = _SeedRun(seed_index=index, seed=seed)
    point = start.point
    if point is None:
        return run
    run.resume_from = run.checkpoint = point.checkpoint
    run.carried_epochs = run.checkpoint_epoch = run.last_epoch = point.epoch
    run.curve = {epoch: value for epoch, value in point.curve if epoch <= point.epoch}
    # The patience counter is a function of the curve, so a seed that had converged before the
    # cut is known to have converged without running it again.
    values = [run.curve[epoch] for epoch in sorted(run.curve)]
    run.converged = patience is not None and (
        epochs_without_improvement(values, min_delta) >= patience
    )
    if run.converged or point.epoch >= max_epochs:  # this seed had ended before the cut
        run.finished_state = TrialState.COMPLETE
    return run


def _mean_or_none(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None

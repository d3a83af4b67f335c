"""What a study runs, read from the stored trials: each point its spec fixes exactly once, then
the sampler's suggestions, up to ``n_trials`` configurations that finished.

A spec fixes points in two ways: ``points`` (listed configurations, e.g. the unregularized one
and the paper's, run first) and a ``grid`` sampler (every point of the grid, in the spec's
order: the first value of each parameter first, the last parameter varying fastest). Which of
them still has to run is computed from the trials in the database on every ask, never from a
sampler's memory: any driver, after any interruption (Ctrl-C, SIGTERM, a killed driver,
``--n-trials`` in steps, several drivers at once), continues with the points that no trial
holds, and a point held twice (two drivers asked at the same moment) is stepped back by the
later one.

A trial *holds* its point unless the service retired it (:class:`Retired`): a trial cut off by
the run rather than by its configuration (Ctrl-C, a lost driver, a worker crash, a full disk)
is FAIL with ``keys.REQUEUED`` and a replacement continues it from its checkpoints; a trial
asked beyond the plan is FAIL with ``keys.SURPLUS``. Neither counts towards ``n_trials``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from study import keys
from study.optuna_study import counted, is_retired, queued_params

__all__ = [
    "PlanSampler",
    "PointKey",
    "Retired",
    "StudyPlan",
    "TrialEnd",
    "counted",
    "is_retired",
    "point_key",
]

PointKey = tuple[tuple[str, Any], ...]


class Retired(str, Enum):
    """Why the service retired a trial to continue it in a replacement (``keys.RETIRED_BECAUSE``).

    None of them says anything about the configuration: the run was cut, not the trial."""

    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, SIGHUP to the driver
    DRIVER_LOST = "driver_lost"  # the driver died without a word (SIGKILL, a lost node)
    INFRASTRUCTURE = "infrastructure"  # a worker or node died, the disk filled, ...


class TrialEnd(str, Enum):
    """Why a trial (one configuration, all its seeds) ended: the fact stored in
    ``zs_trials.end_reason`` when it ends, written with its state; NULL while it runs.

    Readers take how a trial ended from here, never from its error text (a sentence for people,
    free to change). Why each *seed's* run ended (converged, budget, ...) is ``zs_runs.ended``
    (``study.score.RunEnd``); a trial is COMPLETE when every seed converged or ran its budget.
    The three retired ends are :class:`Retired`'s (``zs_trials.retired`` holds the same value
    for them): the service retired ("requeued") the trial and a replacement continues it."""

    COMPLETE = "complete"  # every seed converged or ran its epoch budget (Optuna: COMPLETE)
    PRUNED = "pruned"  # the scheduler stopped the configuration at a rung (Optuna: PRUNED)
    FAILED = "failed"  # a seed raised an error of its own (Optuna: FAIL, counted)
    DIVERGED = "diverged"  # every seed that failed diverged (Optuna: FAIL, counted)
    INTERRUPTED = Retired.INTERRUPTED.value  # retired: the driver stopped (Ctrl-C, SIGTERM)
    DRIVER_LOST = Retired.DRIVER_LOST.value  # retired: its driver died; the reaper found it
    INFRASTRUCTURE = Retired.INFRASTRUCTURE.value  # retired: a worker, node or disk failed it
    SURPLUS = "surplus"  # asked beyond the plan, or for a point another trial holds: stepped back

    @property
    def retired(self) -> Retired | None:
        """The :class:`Retired` reason of a trial the service retired to continue it; None for
        every other end."""
        return _RETIRED_ENDS.get(self)

    @property
    def state(self) -> TrialState:
        """The Optuna state a trial that ended so has."""
        return _STATE_OF_END.get(self, TrialState.FAIL)

    @property
    def counts(self) -> bool:
        """Whether the trial counts towards ``n_trials`` (it holds its point)."""
        return self.retired is None and self is not TrialEnd.SURPLUS

    @classmethod
    def of_retired(cls, retired: Retired) -> TrialEnd:
        return cls(Retired(retired).value)


_RETIRED_ENDS = {TrialEnd(kind.value): kind for kind in Retired}
_STATE_OF_END = {TrialEnd.COMPLETE: TrialState.COMPLETE, TrialEnd.PRUNED: TrialState.PRUNED}


def _canonical(value: Any) -> Any:
    # Stored floats come back from the database as they went in, but a grid value computed
    # as low + i * step and the same number typed in a spec may differ in the last bits.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return round(float(value), 10)
    return value


def point_key(params: Mapping[str, Any], names: Iterable[str]) -> PointKey:
    """A hashable key of a configuration's searched values (``None`` for one it lacks)."""
    return tuple((name, _canonical(params.get(name))) for name in names)


class _Param(Protocol):
    def grid(self) -> list[Any] | None: ...


class _Spec(Protocol):
    @property
    def search(self) -> Mapping[str, Any]: ...

    @property
    def n_trials(self) -> int: ...


@dataclass(frozen=True)
class StudyPlan:
    """The fixed points of a spec, in the order they run, and the trial budget."""

    names: tuple[str, ...]
    fixed: tuple[Mapping[str, Any], ...]
    exhaustive: bool  # a grid: the study ends when every fixed point has been held
    n_trials: int

    @classmethod
    def from_spec(
        cls, spec: _Spec, *, sampler: str, points: Sequence[Mapping[str, Any]] = ()
    ) -> StudyPlan:
        names = tuple(spec.search)
        fixed: list[Mapping[str, Any]] = [dict(point) for point in points]
        exhaustive = sampler == "grid"
        if exhaustive:
            axes = [spec.search[name].grid() for name in names]
            assert all(axis is not None for axis in axes)  # the spec refuses non-grid spaces
            fixed += [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]  # type: ignore[arg-type]
        unique: dict[PointKey, Mapping[str, Any]] = {}
        for point in fixed:
            unique.setdefault(point_key(point, names), point)
        return cls(
            names=names, fixed=tuple(unique.values()), exhaustive=exhaustive, n_trials=spec.n_trials
        )

    @property
    def size(self) -> int:
        """Configurations a finished study holds."""
        return min(self.n_trials, len(self.fixed)) if self.exhaustive else self.n_trials

    def key(self, params: Mapping[str, Any]) -> PointKey:
        return point_key(params, self.names)

    def is_fixed(self, params: Mapping[str, Any]) -> bool:
        return self.key(params) in {self.key(point) for point in self.fixed}

    def remaining(self, trials: Sequence[FrozenTrial]) -> list[Mapping[str, Any]]:
        """The fixed points that no trial holds (queued, running or finished), in order."""
        if not self.fixed:  # a sampler's own suggestions: no scan of every trial per ask
            return []
        held = {
            self.key(trial.params) for trial in trials if not is_retired(trial) and trial.params
        }
        # A WAITING trial has no params yet in Optuna's view of them; its fixed params are the
        # point it will hold.
        held |= {
            self.key(queued_params(trial)) for trial in trials if trial.state == TrialState.WAITING
        }
        return [point for point in self.fixed if self.key(point) not in held]

    def held_before(self, trial: FrozenTrial, trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
        """Another trial that already holds what ``trial`` was asked for: the same fixed point,
        or the continuation of the same retired trial. It finished, or it runs and was asked
        first (two drivers that ask at the same moment keep the lower number)."""
        replaces = trial.user_attrs.get(keys.REQUEUED_FROM)
        fixed = self.is_fixed(trial.params)
        if not fixed and replaces is None:
            return None
        mine = self.key(trial.params)
        for other in trials:
            if (
                other.number == trial.number
                or is_retired(other)
                or other.state == TrialState.WAITING
            ):
                continue
            same = (fixed and self.key(other.params) == mine) or (
                replaces is not None and other.user_attrs.get(keys.REQUEUED_FROM) == replaces
            )
            if not same:
                continue
            if other.state != TrialState.RUNNING or other.number < trial.number:
                return other
        return None


class PlanSampler(BaseSampler):
    """The sampler of a grid spec: each new trial takes the first point of the plan that no
    stored trial holds (study.plan), so the grid's coverage is the database's, not this
    sampler's: a resumed driver, or a second one, never repeats a point or skips one (two
    drivers that ask at the same moment get the same point, and the searcher steps the later
    trial back). Optuna's GridSampler shuffles its grid with its seed and matches trials by a
    position it stores, which a driver with another seed, or an enqueued replacement, does
    not share."""

    def __init__(self, plan: StudyPlan) -> None:
        self._plan = plan
        self._chosen: dict[int, Mapping[str, Any]] = {}

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if trial.number not in self._chosen:
            others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
            remaining = self._plan.remaining(others)
            # Nothing left: the searcher asked in a race it is about to lose; any point will do,
            # the trial steps back as held by another.
            self._chosen[trial.number] = remaining[0] if remaining else self._plan.fixed[0]
        return self._chosen[trial.number][param_name]

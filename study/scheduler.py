"""Early stopping by configuration: asynchronous successive halving (ASHA) over the score.

Ray Tune's ``ASHAScheduler`` decides on each Ray trial alone. With ``repeats: k`` the service runs
one configuration as k Ray trials (one per seed), so Ray's scheduler would rank a seed against
the other seeds of its own configuration and stop the unlucky ones: a study of TPE + ASHA +
repeats ended with every configuration pruned. Here the unit is the configuration:

* at each rung (epoch ``grace_period * reduction_factor**k`` below the epoch budget) a
  configuration is judged once, when every one of its seeds has reported that epoch (or
  converged before it), on its score there (study.score: the mean over seeds of each seed's
  best value up to the rung); a seed that converged is done, not stopped by the scheduler;
* it continues if that mean is among the best ``1 / reduction_factor`` of the means recorded
  at the rung so far (Ray's ASHA rule: the cutoff is the ``100 / reduction_factor`` percentile,
  linearly interpolated, as ``numpy.nanpercentile``), else every seed stops;
* a seed that runs ahead of its siblings is not held at the rung: it goes on and is stopped at
  its next report if the configuration is pruned (at most the epochs it ran ahead are spent);
* the rungs are filled from the study's stored intermediate values when a driver starts, so a
  resumed or second driver judges against every configuration the study has seen, and a
  replacement that continues a retired trial is not judged again at the rungs it had passed.

:class:`SuccessiveHalving` is the rule alone (no Ray); :class:`ConfigurationASHA` adapts it to
Ray Tune's scheduler interface through the searcher, which knows each Ray trial's configuration.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.score import score_at
from trials.trainable import CONVERGED_KEY

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["ConfigurationASHA", "SuccessiveHalving", "rung_epochs"]

METRIC = "valid_metric"  # frame-contract: not a column (Ray's result key)
_EPOCH = "epoch"  # frame-contract: not a column (Ray's result key)


def rung_epochs(grace_period: int, reduction_factor: float, max_epochs: int) -> list[int]:
    """The epochs at which configurations are judged: ``grace_period * rf**k`` (rounded up to a
    whole epoch) below ``max_epochs``. A run that reached its budget is not judged: it is done."""
    epochs: list[int] = []
    k = 0
    while True:
        epoch = math.ceil(grace_period * reduction_factor**k - 1e-9)
        if epoch >= max_epochs:
            return epochs
        if not epochs or epoch > epochs[-1]:
            epochs.append(epoch)
        k += 1


class SuccessiveHalving:
    """The rungs of one study and the decision at each (lower metric is better)."""

    def __init__(self, *, grace_period: int, reduction_factor: float, max_epochs: int) -> None:
        self.reduction_factor = reduction_factor
        self.rungs: dict[int, dict[int, float]] = {
            epoch: {} for epoch in rung_epochs(grace_period, reduction_factor, max_epochs)
        }

    def cutoff(self, epoch: int) -> float | None:
        recorded = list(self.rungs[epoch].values())
        if not recorded:
            return None
        return float(np.nanpercentile(recorded, 100.0 / self.reduction_factor))

    def judge(self, number: int, epoch: int, value: float) -> bool:
        """Record configuration ``number``'s score at rung ``epoch``; True if it continues.
        A configuration is judged once per rung: a second call returns the first verdict's
        record without judging again."""
        recorded = self.rungs[epoch]
        if number in recorded:
            return True
        cutoff = self.cutoff(epoch)
        recorded[number] = value
        return cutoff is None or not (value > cutoff) or math.isnan(cutoff)

    def record(self, number: int, epoch: int, value: float) -> None:
        """Record without judging (a configuration seen before this driver started, or a rung
        a continued trial had already passed)."""
        if epoch in self.rungs and math.isfinite(value):
            self.rungs[epoch].setdefault(number, value)

    def preload(self, trials: Iterable[FrozenTrial], *, skip: Iterable[int] = ()) -> None:
        """Fill the rungs from stored trials: their intermediate values are their scores."""
        skipped = set(skip)
        for trial in trials:
            if trial.number in skipped:
                continue
            for epoch in self.rungs:
                value = trial.intermediate_values.get(epoch)
                if value is not None:
                    self.record(trial.number, epoch, float(value))


class _Run(Protocol):
    curve: dict[int, float]
    carried_epochs: int
    converged: bool


class _Configuration(Protocol):
    @property
    def runs(self) -> list[Any]: ...  # list[_Run]

    @property
    def replaces(self) -> int | None: ...


class _Searcher(Protocol):
    def slot_of(self, ray_trial_id: str) -> tuple[int, int] | None: ...

    def configuration(self, number: int) -> _Configuration: ...

    def prune(self, number: int, epoch: int) -> None: ...

    def is_pruned(self, number: int) -> bool: ...


class ConfigurationASHA(FIFOScheduler):
    """Ray Tune scheduler: ASHA whose unit is a configuration (all its seeds), not a Ray trial."""

    def __init__(
        self,
        searcher: _Searcher,
        *,
        grace_period: int,
        reduction_factor: float,
        max_epochs: int,
        stored: Iterable[FrozenTrial] = (),
    ) -> None:
        super().__init__()
        self._searcher = searcher
        self.halving = SuccessiveHalving(
            grace_period=grace_period, reduction_factor=reduction_factor, max_epochs=max_epochs
        )
        self.halving.preload(stored)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        slot = self._searcher.slot_of(trial.trial_id)
        if slot is None or METRIC not in result:
            return TrialScheduler.CONTINUE
        number, seed_index = slot
        if self._searcher.is_pruned(number):
            return TrialScheduler.STOP
        configuration = self._searcher.configuration(number)
        # Tune asks the scheduler before it hands the result to the searcher: add it here.
        curves: list[Mapping[int, float]] = [dict(run.curve) for run in configuration.runs]
        done = [run.converged for run in configuration.runs]
        epoch = int(result.get(_EPOCH, result.get("training_iteration", 0)))
        curves[seed_index] = {**curves[seed_index], epoch: float(result[METRIC])}
        done[seed_index] = done[seed_index] or bool(result.get(CONVERGED_KEY))
        passed = (
            min(run.carried_epochs for run in configuration.runs)
            if configuration.replaces is not None
            else 0
        )
        for rung in self.halving.rungs:
            value = score_at(curves, rung, done)
            if value is None:
                continue
            if rung <= passed:
                self.halving.record(number, rung, value)
            elif not self.halving.judge(number, rung, value):
                self._searcher.prune(number, rung)
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        rungs = ", ".join(
            f"epoch {epoch}: {len(recorded)} recorded"
            for epoch, recorded in self.halving.rungs.items()
        )
        return f"ConfigurationASHA({rungs})"

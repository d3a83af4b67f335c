"""A trial's score, the one number the service ranks by, and why each of its runs ended.

The score of a trial (one configuration, run with ``repeats`` seeds) read at epoch ``k`` is

    the mean over its seeds of each seed's best (lowest) validation value over epochs 1..k

where a seed that stopped before ``k`` because it converged (``patience`` ran out) keeps its
best: early stopping keeps that epoch's checkpoint. A finished trial's score is read at the end
of its runs: each seed's best over every epoch it ran. Optuna's trial value, its intermediate
values (the score at each epoch), ``zs_trials.best_value``, ``status``, ``list``, ``export``'s
ranking, ASHA's rungs, the report and ``compare`` all use this definition (the report computes
it per run from the epochs table; ``tests/study/test_one_score.py`` holds the two together).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from enum import Enum

from study.store import RunRecord
from trials.trainable import TrialDiverged

__all__ = [
    "RunEnd",
    "failure_end",
    "run_record",
    "score",
    "score_at",
    "score_curve",
    "seed_best",
]


class RunEnd(str, Enum):
    """Why one seed's run of a trial ended (stored per run in ``zs_runs.ended``)."""

    CONVERGED = "converged"
    """No improvement of at least ``min_delta`` for ``patience`` epochs: the run stopped."""
    BUDGET = "budget"
    """It trained every epoch of ``epochs``; whether it had converged is not known."""
    DIVERGED = "diverged"
    """The loss became non-finite or exploded (the trial FAILs)."""
    PRUNED = "pruned"
    """The scheduler (ASHA) stopped its configuration at a rung."""
    INTERRUPTED = "interrupted"
    """The run, not the configuration, cut it off (a driver stop, a lost worker, node or disk);
    a replacement trial continues it from its checkpoint."""
    FAILED = "failed"
    """It raised an error of its own (the trial FAILs)."""


Curve = Mapping[int, float]


def seed_best(curve: Curve, up_to: int | None = None) -> float | None:
    """The lowest finite validation value of one seed's run over epochs ``<= up_to``."""
    values = [v for e, v in curve.items() if (up_to is None or e <= up_to) and math.isfinite(v)]
    return min(values) if values else None


def score_at(curves: Sequence[Curve], epoch: int, done: Sequence[bool]) -> float | None:
    """The score at ``epoch``, once every seed has reached it or is ``done`` (converged) before
    it; None before that, or when a seed has no finite value up to it."""
    bests: list[float] = []
    for curve, finished in zip(curves, done, strict=True):
        if epoch not in curve and not (finished and curve and max(curve) < epoch):
            return None
        best = seed_best(curve, epoch)
        if best is None:
            return None
        bests.append(best)
    return statistics.fmean(bests) if bests else None


def score_curve(curves: Sequence[Curve], done: Sequence[bool]) -> dict[int, float]:
    """The score at every epoch it is defined (Optuna's intermediate values)."""
    epochs = sorted({epoch for curve in curves for epoch in curve})
    out: dict[int, float] = {}
    for epoch in epochs:
        value = score_at(curves, epoch, done)
        if value is not None:
            out[epoch] = value
    return out


def score(curves: Sequence[Curve]) -> float | None:
    """A finished trial's score: the mean over seeds of each seed's best over its whole run."""
    bests = [seed_best(curve) for curve in curves]
    if not bests or any(best is None for best in bests):
        return None
    return statistics.fmean(b for b in bests if b is not None)


def failure_end(reason: str | None) -> RunEnd:
    """A failed run's end: diverged when its reason names the trainable's divergence."""
    return RunEnd.DIVERGED if TrialDiverged.__name__ in (reason or "") else RunEnd.FAILED


def run_record(
    seed: int,
    curve: Curve,
    end: RunEnd,
    *,
    layer_path: str | None = None,
    layer_fallback: str | None = None,
) -> RunRecord:
    """What the store keeps of one seed's run: why it ended, its last and best epoch, and the
    recurrent layer's path it reported (with why it fell back, if it did)."""
    finite = {e: v for e, v in curve.items() if math.isfinite(v)}
    best_epoch = min(finite, key=lambda e: (finite[e], e)) if finite else None
    return RunRecord(
        seed=int(seed),
        ended=end.value,
        epochs=max(curve) if curve else None,
        best_epoch=best_epoch,
        best_value=finite[best_epoch] if best_epoch is not None else None,
        layer_path=layer_path,
        layer_fallback=layer_fallback,
    )

"""Trials left RUNNING by a dead driver: detect them, mark them FAIL, queue their replacements.

A trial is reaped when the driver stamped on it is provably gone (see :mod:`study.heartbeat`):
on this host, its process no longer exists; elsewhere, its heartbeat is older than
``stale_after`` seconds. The replacement carries the trial's per-seed resume points, so the
next driver continues each seed from its last checkpoint (see :mod:`study.resume`).
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from study import keys
from study import optuna_study as ostudy
from study.heartbeat import STALE_AFTER_SECONDS, driver_alive
from study.plan import Retired

__all__ = ["DRIVER_LOST", "continue_orphans", "continued_trials", "reap_lost_trials"]

# The reason a reaped trial shows: display text only. How it ended is the fact
# study.plan.TrialEnd.DRIVER_LOST (``keys.RETIRED_BECAUSE`` in Optuna; ``zs_trials.end_reason``
# and ``retired`` in the store, written by the runner).
DRIVER_LOST = "driver lost"


def reap_lost_trials(
    study: optuna.Study, *, current_driver: str, stale_after: float = STALE_AFTER_SECONDS
) -> list[int]:
    """Mark trials of dead drivers FAIL ('driver lost') and enqueue their replacements.

    Returns the numbers of the reaped trials.
    """
    reaped = []
    now = time.time()
    for trial in ostudy.trials(study, (TrialState.RUNNING,)):
        driver = trial.user_attrs.get(keys.DRIVER)
        if driver is None:
            # Another driver asked for this trial a moment ago and is about to stamp its id:
            # only an old unstamped trial is an orphan.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            if now - started < stale_after:
                continue
        elif driver == current_driver or driver_alive(study, driver, stale_after=stale_after):
            continue
        if ostudy.retire_lost_trial(study, trial, DRIVER_LOST, Retired.DRIVER_LOST.value):
            reaped.append(trial.number)
    return reaped


def continue_orphans(study: optuna.Study) -> list[int]:
    """Queue a replacement for every retired trial that has none: a driver killed between
    retiring a trial and queueing its replacement must not lose the trial's point (or its
    checkpoints). Returns the numbers of the trials now continued."""
    trials = ostudy.trials(study)
    replaced = {t.user_attrs.get(keys.REQUEUED_FROM) for t in trials}
    orphans = [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and t.user_attrs.get(keys.REQUEUED)
        and t.number not in replaced
    ]
    for trial in orphans:
        ostudy.enqueue_replacement(
            study,
            trial.params,
            replaces=trial.number,
            resume_points=trial.user_attrs.get(keys.RESUME_POINTS),
        )
    return [trial.number for trial in orphans]


def continued_trials(study: optuna.Study) -> list[int]:
    """Retired trials whose replacement has run: it ended (finished, or was retired in its turn
    and is then the one still to be continued). What is left of a retired trial to run is its
    replacement's (``keys.REQUEUED_FROM`` on the replacement names it), so these are not
    "to be continued" any more. Ascending numbers."""
    trials = ostudy.trials(study)
    ended = {
        t.user_attrs.get(keys.REQUEUED_FROM)
        for t in trials
        if t.state not in (TrialState.WAITING, TrialState.RUNNING)
    }
    return sorted(
        t.number
        for t in trials
        if t.state == TrialState.FAIL and t.user_attrs.get(keys.REQUEUED) and t.number in ended
    )

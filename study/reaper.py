"""Trials left RUNNING by a dead driver: detect them, mark them FAIL, run their parameters again.

Optuna's heartbeat does not cover ask/tell, so a killed driver would leave its trials RUNNING
forever. Each driver records its id (``host:pid:start``) on the trials it asks and beats a
heartbeat into the study's system attrs; a trial is reaped when its driver is provably gone:
on this host, its process no longer exists; elsewhere, its heartbeat is older than
``stale_after`` seconds.
"""

from __future__ import annotations

import os
import socket
import time

import optuna
from optuna.trial import TrialState

from study.searcher import DRIVER_ATTR, FAIL_REASON_ATTR, REQUEUED_ATTR

__all__ = ["DRIVER_LOST", "beat", "driver_alive", "other_live_drivers", "reap_lost_trials"]

DRIVER_LOST = "driver lost"
HEARTBEAT_PREFIX = "driver_heartbeat:"


def beat(study: optuna.Study, driver_id: str) -> None:
    """Record that ``driver_id`` is alive now."""
    study._storage.set_study_system_attr(study._study_id, HEARTBEAT_PREFIX + driver_id, time.time())


def _system_attrs(study: optuna.Study) -> dict[str, object]:
    # Optuna 5 removed ``Study.system_attrs``; the storage still has them.
    return study._storage.get_study_system_attrs(study._study_id)


def other_live_drivers(
    study: optuna.Study, driver_id: str, *, stale_after: float = 120.0
) -> list[str]:
    """Drivers other than ``driver_id`` whose heartbeat on this study is recent."""
    now = time.time()
    return [
        key.removeprefix(HEARTBEAT_PREFIX)
        for key, value in _system_attrs(study).items()
        if key.startswith(HEARTBEAT_PREFIX)
        and key != HEARTBEAT_PREFIX + driver_id
        and now - float(value) < stale_after
    ]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_alive(study: optuna.Study, driver_id: str | None, *, stale_after: float) -> bool:
    if not driver_id:
        return False
    host, _, rest = driver_id.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        return int(pid_text) != os.getpid() and _process_exists(int(pid_text))
    last = _system_attrs(study).get(HEARTBEAT_PREFIX + driver_id)
    return last is not None and time.time() - float(last) < stale_after


def reap_lost_trials(
    study: optuna.Study, *, current_driver: str, stale_after: float = 120.0
) -> list[int]:
    """Mark trials of dead drivers FAIL ('driver lost') and enqueue their parameters again.

    Returns the numbers of the reaped trials.
    """
    storage = study._storage
    reaped = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = trial.user_attrs.get(DRIVER_ATTR)
        if driver is None:
            # Another driver asked for this trial a moment ago and is about to stamp its id:
            # only an old unstamped trial is an orphan.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            if now - started < stale_after:
                continue
        elif driver == current_driver or driver_alive(study, driver, stale_after=stale_after):
            continue
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, DRIVER_LOST)
        storage.set_trial_user_attr(trial._trial_id, REQUEUED_ATTR, True)
        try:
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another driver reaped (or finished) it first
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        reaped.append(trial.number)
    return reaped

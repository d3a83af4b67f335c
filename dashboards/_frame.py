"""The contract between the service and the dashboards: what the frames handed in hold.

``study`` reads the store and hands ``dashboards`` pandas frames (trials, epochs, runs). This
module names their columns and the values of their ``state`` column once, for both sides:
``dashboards`` never imports ``study``, and ``study`` imports these names from here.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TrialState"]


class TrialState(StrEnum):
    """A trial's state as Optuna stores it (the ``state`` column of a trials frame).

    The values are Optuna's own names (``optuna.trial.TrialState.X.name``), so a frame read from
    the store, a CSV written by ``status --csv`` and Optuna's trials all use the same words.
    """

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    RUNNING = "RUNNING"
    WAITING = "WAITING"

    @property
    def finished(self) -> bool:
        """Whether a trial in this state has ended (Optuna's ``is_finished``)."""
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

"""The contract between the service and the dashboards: what the frames handed in hold.

``study`` reads the store and hands ``dashboards`` pandas frames (trials, epochs, runs). This
module names their columns, the kind of value each holds and the values of their ``state``
column once, for both sides: ``dashboards`` never imports ``study``, and ``study`` imports these
names from here. The entry points of ``dashboards`` check the frames they are handed against
:data:`TRIALS_FRAME`, :data:`EPOCHS_FRAME` and :data:`RUNS_FRAME`, so a renamed column fails
there, naming the frame, the column and what was expected, not deep inside a figure.

The kinds are loose on purpose: a frame read back from a CSV table (``status --csv``) holds the
same columns with numpy's dtypes (a seed column with an empty cell reads as float), and a
column with no value at all passes every kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

import numpy as np
import pandas as pd

from trials.errors import UserError

__all__ = [
    "EPOCHS_FRAME",
    "PARAM_PREFIX",
    "RUNS_FRAME",
    "TRIALS_FRAME",
    "Col",
    "ColumnSpec",
    "FrameContractError",
    "FrameSpec",
    "TrialState",
    "check_frames",
    "param_column",
]


class TrialState(str, Enum):
    """A trial's state as Optuna stores it (the ``state`` column of a trials frame).

    The values are Optuna's own names (``optuna.trial.TrialState.X.name``), so a frame read from
    the store, a CSV written by ``status --csv`` and Optuna's trials all use the same words.
    A ``str`` (``enum.StrEnum`` needs Python 3.11; the project supports 3.10): members compare
    equal to, hash like and print as those words.
    """

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    RUNNING = "RUNNING"
    WAITING = "WAITING"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def finished(self) -> bool:
        """Whether a trial in this state has ended (Optuna's ``is_finished``)."""
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class Col:
    """The column names of the store's frames (plain strings: ``frame[Col.NUMBER]``)."""

    STUDY: Final = "study"
    NUMBER: Final = "number"
    """The Optuna trial number (one configuration)."""
    STATE: Final = "state"
    """A :class:`TrialState` value."""
    SEED: Final = "seed"
    EPOCH: Final = "epoch"
    """1-based epoch of an epochs row."""
    EPOCHS: Final = "epochs"
    """The last epoch a trial (trials frame) or a run (runs frame) reached."""
    VALID_METRIC: Final = "valid_metric"
    """The task's metric on the validation split (``trials.tasks``)."""
    BEST_VALUE: Final = "best_value"
    FINAL_VALUE: Final = "final_value"
    ERROR: Final = "error"
    RETIRED: Final = "retired"
    """Why the service retired a trial (``study.plan.Retired``), else empty."""
    ENDED: Final = "ended"
    """Why a seed's run ended (``study.score.RunEnd``)."""
    BEST_EPOCH: Final = "best_epoch"
    LAYER_PATH: Final = "layer_path"
    """The recurrent layer's path a run took (``trials.zoneout.LayerPath`` values; runs frame)."""
    LAYER_FALLBACK: Final = "layer_fallback"
    """Why a run's layer fell back from its preferred path (runs frame), else empty."""


#: Searched parameters are the trials frame's ``param_<name>`` columns.
PARAM_PREFIX: Final = "param_"


def param_column(name: str) -> str:
    """The trials frame's column of the searched parameter ``name``."""
    return PARAM_PREFIX + name


Kind = Literal["integer", "number", "text", "state"]
_EXPECTED = {
    "integer": "integers (a nullable Int64, int64, or a float column of whole numbers)",
    "number": "numbers (a float or integer dtype)",
    "text": "strings (object or string dtype)",
    "state": f"trial state names ({', '.join(s.value for s in TrialState)})",
}


class FrameContractError(UserError, ValueError):
    """A frame handed to ``dashboards`` does not hold what :mod:`dashboards._frame` names."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a frame: its name, the kind of value it holds, whether it must be there."""

    name: str
    kind: Kind
    required: bool = False

    def problem(self, column: pd.Series) -> str | None:
        """Why ``column`` does not hold this kind of value, or None when it does."""
        values = column.dropna()
        if values.empty:
            return None
        if self.kind == "state":
            bad = sorted(set(values.astype(str)) - set(TrialState))
            return f"holds {', '.join(map(repr, bad[:3]))}" if bad else None
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if self.kind == "text":
            return None if not numeric else f"has dtype {column.dtype}"
        if not numeric:
            return f"has dtype {column.dtype}"
        if self.kind == "integer" and not pd.api.types.is_integer_dtype(column):
            v = values.to_numpy(dtype=float)
            if not np.all(np.isfinite(v) & (v == np.round(v))):
                return f"has dtype {column.dtype} with values that are not whole numbers"
        return None


@dataclass(frozen=True)
class FrameSpec:
    """The columns a frame of the store holds (those ``dashboards`` reads)."""

    name: str
    """The frame's name in messages: 'trials frame'."""
    source: str
    """Where the service gets it."""
    columns: tuple[ColumnSpec, ...]
    absent_ok: bool = False
    """Whether a frame with no column at all (``pd.DataFrame()``) stands for 'none'."""

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def check(self, frame: pd.DataFrame | None, *, where: str = "") -> None:
        """Raise :class:`FrameContractError` naming this frame, the missing or mistyped columns
        and what was expected; return quietly when ``frame`` satisfies the contract."""
        if frame is None or (self.absent_ok and len(frame.columns) == 0):
            return
        at = f" handed to {where}" if where else ""
        if not isinstance(frame, pd.DataFrame):
            raise FrameContractError(
                f"the {self.name}{at} is a {type(frame).__name__}, not a pandas DataFrame"
            )
        missing = [c for c in self.required if c not in frame.columns]
        if missing:
            raise FrameContractError(
                f"the {self.name}{at} lacks column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))}: expected {', '.join(map(repr, self.required))} "
                f"({self.source}); it has {_names(frame.columns)}"
            )
        for spec in self.columns:
            if spec.name in frame.columns:
                why = spec.problem(frame[spec.name])
                if why is not None:
                    raise FrameContractError(
                        f"the {self.name}{at}: column {spec.name!r} {why}; "
                        f"expected {_EXPECTED[spec.kind]} ({self.source})"
                    )


def _names(columns: Iterable[object], most: int = 12) -> str:
    names = [repr(str(c)) for c in columns]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return (", ".join(names[:most]) or "no column") + more


TRIALS_FRAME = FrameSpec(
    "trials frame",
    "one row per trial, as Store.trials_frame returns it",
    (
        ColumnSpec(Col.NUMBER, "integer", required=True),
        ColumnSpec(Col.STATE, "state"),
        ColumnSpec(Col.SEED, "integer"),
        ColumnSpec(Col.BEST_VALUE, "number"),
        ColumnSpec(Col.FINAL_VALUE, "number"),
        ColumnSpec(Col.EPOCHS, "integer"),
        ColumnSpec(Col.ERROR, "text"),
        ColumnSpec(Col.RETIRED, "text"),
    ),
)
"""The trials frame. Only ``number`` is required: ``state`` reads as COMPLETE where a table has
no such column, and the searched parameters are its ``param_<name>`` columns."""

EPOCHS_FRAME = FrameSpec(
    "epochs frame",
    "one row per (trial, seed, epoch), as Store.epochs_frame returns it",
    (
        ColumnSpec(Col.NUMBER, "integer", required=True),
        ColumnSpec(Col.EPOCH, "integer", required=True),
        ColumnSpec(Col.VALID_METRIC, "number", required=True),
        ColumnSpec(Col.SEED, "integer"),
    ),
    absent_ok=True,
)
"""The epochs frame; ``pd.DataFrame()`` when there is none (each trial then is one run)."""

RUNS_FRAME = FrameSpec(
    "runs frame",
    "one row per (trial, seed) run, as Store.runs_frame returns it",
    (
        ColumnSpec(Col.NUMBER, "integer", required=True),
        ColumnSpec(Col.SEED, "integer", required=True),
        ColumnSpec(Col.ENDED, "text", required=True),
        ColumnSpec(Col.EPOCHS, "integer"),
        ColumnSpec(Col.BEST_EPOCH, "integer"),
        ColumnSpec(Col.BEST_VALUE, "number"),
        ColumnSpec(Col.LAYER_PATH, "text"),
        ColumnSpec(Col.LAYER_FALLBACK, "text"),
    ),
    absent_ok=True,
)
"""Why each run ended (``ends``); None or ``pd.DataFrame()`` when the store has no such table."""


def check_frames(
    where: str,
    *,
    trials: pd.DataFrame | None = None,
    epochs: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
) -> None:
    """Check the frames an entry point of ``dashboards`` (``where``) was handed against the
    contract: :data:`TRIALS_FRAME`, :data:`EPOCHS_FRAME`, :data:`RUNS_FRAME`."""
    TRIALS_FRAME.check(trials, where=where)
    EPOCHS_FRAME.check(epochs, where=where)
    RUNS_FRAME.check(runs, where=where)

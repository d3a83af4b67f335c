"""The words the terminal uses for trials, and the look of its tables: the trials the service
retired itself named as what happened to them (interrupted, driver lost, cut off), every other
trial by its stored state, and a cell's text."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from dashboards import Col
from study.plan import Retired


def plain_table(title: str) -> Table:
    """A table that reads at 80 columns: a rule under the header, one space of padding
    between columns (the box's separator adds the other), long cells folded, never cut."""
    return Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False
    )


# Why the service retired a trial, as the terminal says it.
RETIRED_WORDS = {
    Retired.INTERRUPTED: "interrupted",
    Retired.DRIVER_LOST: "driver lost",
    Retired.INFRASTRUCTURE: "cut off",
}


class FailureWords:
    """Words for the trials the service retired itself (the stored end reason, read by
    :func:`study.failures.retired_reasons`): a trial cut short by Ctrl-C, one left running by
    a driver that died, one cut off by the infrastructure. The next run of the spec continues
    each in a new trial from its last checkpoint, so they do not count towards the plan. Other
    states keep the names Optuna and the store give them (COMPLETE, PRUNED, FAIL, RUNNING)."""

    def __init__(self, trials: Any) -> None:
        """``trials``: a trials frame; rows are then named by its index labels."""
        from study.failures import retired_reasons

        self._trials = trials
        reasons = retired_reasons(trials)
        self._retired = {
            index: None if value is None else Retired(value) for index, value in reasons.items()
        }

    def kinds(self) -> list[str]:
        """:meth:`kind` of every row, in the frame's order."""
        return [self.kind(index, state) for index, state in self._trials[Col.STATE].items()]

    def kind(self, index: Any, state: Any) -> str:
        """'interrupted', 'driver lost', 'cut off', or the stored state (COMPLETE, PRUNED, FAIL,
        ...) of the frame's row ``index``."""
        retired = self._retired[index]
        if retired is None:
            return str(state)
        return RETIRED_WORDS[retired]

    def sentence(self, index: Any, state: Any, error: str) -> str:
        retired = self._retired[index]
        if retired is Retired.INFRASTRUCTURE:
            return (
                f"{error}; it does not count, and a replacement continues it from its last "
                "checkpoint"
            )
        if retired is Retired.INTERRUPTED:
            return (
                "interrupted (the driver stopped before it finished); it does not count, and a "
                "replacement continues it from its last checkpoint"
            )
        if retired is Retired.DRIVER_LOST:
            return (
                "lost its driver while it ran; it does not count, and a replacement continues it "
                "from its last checkpoint"
            )
        if retired is not None:
            return f"{error}; it does not count, and a replacement continues it"
        return f"{state}: {error}"


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA and NaT: what a table shows as '-'."""
    import pandas as pd

    if isinstance(value, (list, dict)):
        return False
    return value is None or bool(pd.isna(value))


def cell(value: Any) -> str:
    """A table cell's text; escaped, since a categorical value may look like markup."""
    if isinstance(value, (list, dict)):
        return escape(str(value))
    if is_missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))

"""The words the terminal uses for trials, and the look of its tables: the trials the service
retired itself named as what happened to them (interrupted, driver lost, cut off), every other
trial by its stored state, and a cell's text."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from rich import box
from rich.markup import escape
from rich.table import Table

from dashboards import Col
from study.cli._base import terminal_safe

if TYPE_CHECKING:
    import pandas as pd

    from study.plan import Retired


class _SafeTable(Table):
    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        cells = [terminal_safe(c) if isinstance(c, str) else c for c in renderables]
        super().add_row(*cells, **kwargs)


def plain_table(title: str) -> Table:
    """A table that reads at 80 columns: a rule under the header, one space of padding
    between columns (the box's separator adds the other), long cells folded, never cut; text
    cells shown with their control characters escaped (:func:`terminal_safe`)."""
    return _SafeTable(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False
    )


@functools.cache
def retired_words() -> dict[Retired, str]:
    """Why the service retired a trial, as the terminal says it. (study.plan, which defines
    :class:`Retired`, loads Optuna: only once a command names trials.)"""
    from study.plan import Retired

    return {
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
        from study.plan import Retired

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
        return retired_words()[retired]

    def sentence(self, index: Any, state: Any, error: str) -> str:
        from study.plan import Retired

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


def kind_counts(counts: pd.DataFrame) -> dict[str, int] | None:
    """Trials per :meth:`FailureWords.kind`, from a frame of groups and their sizes (the store's
    ``trial_counts``: a row per state and end, its count in ``trials``). None where the groups
    cannot tell a retired trial from a failed one: a database no run has upgraded since before
    the ``retired`` column, whose error texts say it (read them through ``trials_frame``)."""
    if Col.RETIRED not in counts.columns:
        return None
    out: dict[str, int] = {}
    if counts.empty:
        return out
    # One row stands for its group: FailureWords reads a trial by its state and end, never by
    # its number (the frame contract asks for a number column: the group's position).
    groups = counts.reset_index(drop=True)
    groups[Col.NUMBER] = range(len(groups))
    for kind, n in zip(FailureWords(groups).kinds(), groups["trials"], strict=True):
        out[kind] = out.get(kind, 0) + int(n)
    return out


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

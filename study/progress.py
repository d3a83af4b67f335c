"""The live progress display of a running study.

On a terminal: one rich progress bar, trials done of the trials planned for this run, with the
running / pruned / failed counts, the best value so far and an ETA. Anywhere else (a pipe, CI, a
log file): one plain line each time a trial finishes, with the same numbers.

:class:`ProgressDisplay` draws from :class:`ProgressSnapshot` values and knows nothing of Ray, so
it can be driven directly (tests do); :class:`ProgressCallback` is the Ray Tune callback that
feeds it from the searcher.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState
from ray.tune import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

__all__ = ["ProgressCallback", "ProgressDisplay", "ProgressSnapshot", "format_eta"]

# Seconds between display refreshes driven by Tune's step loop (a trial's end refreshes at once).
_STEP_REFRESH_S = 0.25


@dataclass(frozen=True)
class ProgressSnapshot:
    """Configurations of this run by state, and the best value of a COMPLETE one."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best: float | None = None

    @property
    def done(self) -> int:
        return self.complete + self.pruned + self.failed

    @classmethod
    def from_counts(cls, counts: dict[str, int], best: float | None) -> ProgressSnapshot:
        """``counts``: configurations by Optuna state name (``OptunaSearcher.counts``)."""
        return cls(
            complete=counts.get(TrialState.COMPLETE.name, 0),
            pruned=counts.get(TrialState.PRUNED.name, 0),
            failed=counts.get(TrialState.FAIL.name, 0),
            running=counts.get(TrialState.RUNNING.name, 0),
            best=best,
        )


def format_eta(seconds: float | None) -> str:
    """'-' before the first trial finishes, then '1h02m', '4m05s' or '12s'."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressDisplay:
    """A progress bar on a terminal, plain lines elsewhere; see the module docstring.

    The ETA is the mean time per finished trial so far (wall time, so concurrency counts) times
    the trials left: trials of one study take similar times, and pruned ones pull it down as
    they will for the rest of the run.
    """

    def __init__(
        self,
        *,
        planned: int,
        metric: str,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.planned = max(0, planned)
        self.metric = metric
        self.console = console or Console(markup=False)
        self._clock = clock
        self._started = clock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_line: str | None = None
        self.snapshot = ProgressSnapshot()

    @property
    def live(self) -> bool:
        """Whether a bar is drawn (a terminal) rather than plain lines."""
        return self.console.is_terminal

    def eta_seconds(self, snapshot: ProgressSnapshot) -> float | None:
        if snapshot.done == 0:
            return None
        left = max(0, self.planned - snapshot.done)
        return (self._clock() - self._started) / snapshot.done * left

    def _fields(self, snapshot: ProgressSnapshot) -> dict[str, str]:
        best = f"{snapshot.best:.4f}" if snapshot.best is not None else "-"
        return {
            "states": (
                f"{snapshot.running} running, {snapshot.pruned} pruned, {snapshot.failed} failed"
            ),
            "best": f"best {self.metric} {best}",
            "eta": f"ETA {format_eta(self.eta_seconds(snapshot))}",
        }

    def start(self) -> None:
        self._started = self._clock()
        if not self.live or self._progress is not None:
            return
        self._progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TextColumn("[bold]{task.fields[best]}"),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            refresh_per_second=2,
            transient=False,
        )
        self._task = self._progress.add_task(
            "trials", total=self.planned or None, **self._fields(self.snapshot)
        )
        self._progress.start()

    def update(self, snapshot: ProgressSnapshot) -> None:
        self.snapshot = snapshot
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=snapshot.done, **self._fields(snapshot))
            return
        if self.live:
            return  # not started (or stopped): nothing to draw on
        fields = self._fields(snapshot)
        line = (
            f"trials {snapshot.done}/{self.planned}: {snapshot.complete} complete, "
            f"{fields['states']}; {fields['best']}; {fields['eta']}"
        )
        # A line when a trial finished or the best changed: not for every tick of the driver
        # loop, nor for each new trial starting (the next line shows how many run).
        key = f"{snapshot.complete} {snapshot.pruned} {snapshot.failed} {snapshot.best}"
        if key != self._last_line:
            self._last_line = key
            self.console.print(line, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=self.snapshot.done, **self._fields(self.snapshot)
            )
            self._progress.stop()
        self._progress = None
        self._task = None


class ProgressCallback(Callback):
    """Feeds :class:`ProgressDisplay` from the searcher as Ray Tune reports trials."""

    def __init__(
        self,
        searcher: Any,
        *,
        metric: str,
        planned: int = 0,
        console: Console | None = None,
        heartbeat: Any = None,
    ) -> None:
        self._searcher = searcher
        self._display = ProgressDisplay(planned=planned, metric=metric, console=console)
        self._heartbeat = heartbeat
        self._last_beat = 0.0
        self._last_step_refresh = 0.0

    # Tune pickles its callbacks into the experiment directory: no console, no live display.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_display=None, _heartbeat=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _snapshot(self) -> ProgressSnapshot:
        counts = dict(self._searcher.counts())
        # A configuration the run retired (its worker died, the driver stopped) is FAIL in
        # Optuna but neither failed nor done: its replacement continues it and is counted.
        failed = TrialState.FAIL.name
        counts[failed] = max(0, counts.get(failed, 0) - len(self._searcher.retired()))
        return ProgressSnapshot.from_counts(counts, self._searcher.best_value())

    def setup(self, **info: Any) -> None:
        if self._display is not None:
            self._display.start()

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._heartbeat is not None and now - self._last_beat > 10:
            self._last_beat = now
            self._heartbeat()
        if self._display is not None:
            self._display.update(self._snapshot())

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # Tune steps many times a second and a snapshot counts every configuration of the run:
        # refreshed at the display's own pace, its cost does not grow with the run's length.
        now = time.monotonic()
        if now - self._last_step_refresh >= _STEP_REFRESH_S:
            self._last_step_refresh = now
            self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._refresh()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._refresh()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._display is not None:
            self._display.update(self._snapshot())
            self._display.stop()
